//! Compare-and-swap (README, "Coordination"): `If-Match` / `If-None-Match` on PUT and DELETE,
//! 412 with the key's mod revision when the condition fails, and the CLI's `--if-revision`,
//! `--if-absent`, `--if-exists`. Clients racing on one key through every node lose no update.
mod common;

use std::thread;

use common::{cli, data, wait_for_revisions, Cluster, Node, Reply};

/// A PUT with one condition header.
fn put_if(node: &Node, key: &str, value: &str, header: (&str, &str)) -> Reply {
    let url = node.url(&data(key));
    let reply = common::http_client()
        .put(url)
        .header(header.0, header.1)
        .body(value.to_string())
        .send()
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    common::read_reply(reply).expect("read the answer")
}

fn delete_if(node: &Node, key: &str, header: (&str, &str)) -> Reply {
    let reply = common::http_client()
        .delete(node.url(&data(key)))
        .header(header.0, header.1)
        .send()
        .unwrap_or_else(|e| panic!("DELETE {key}: {e}"));
    common::read_reply(reply).expect("read the answer")
}

/// The 412 of a failed condition, with the key's mod revision in its body.
fn refused_at(reply: &Reply) -> u64 {
    reply.assert_error(412);
    reply.json()["mod_revision"].as_u64().unwrap_or_else(|| panic!("no mod_revision in {reply:?}"))
}

#[test]
fn clients_incrementing_one_counter_with_if_match_end_at_exactly_their_count() {
    const CLIENTS: usize = 6;
    const INCREMENTS: usize = 10;
    let cluster = Cluster::start(3);
    wait_for_revisions(&cluster.nodes[cluster.leader()]);
    cluster.nodes[0].put(&data("counter"), "0").assert_success();

    let conflicts: usize = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let node = &cluster.nodes[client % 3];
                scope.spawn(move || {
                    let mut conflicts = 0;
                    for _ in 0..INCREMENTS {
                        loop {
                            // A linearizable read, so the ETag is the newest one.
                            let read = node.get(&data("counter"));
                            let value: u64 = read.text().parse().expect("a number");
                            let etag = read.header("ETag").expect("an ETag").to_string();
                            let reply = put_if(node, "counter", &(value + 1).to_string(), ("If-Match", &etag));
                            if reply.status == 412 {
                                conflicts += 1;
                                continue;
                            }
                            reply.assert_success();
                            break;
                        }
                    }
                    conflicts
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().expect("a client")).sum()
    });
    eprintln!("{} increments, {conflicts} lost races retried", CLIENTS * INCREMENTS);
    let last = cluster.nodes[1].get(&data("counter"));
    assert_eq!(last.text(), (CLIENTS * INCREMENTS).to_string(), "an update was lost");
    assert_eq!(last.number("X-Cete-Version"), 1 + (CLIENTS * INCREMENTS) as u64);
}

#[test]
fn create_if_absent_has_one_winner_and_conditions_guard_deletes() {
    let cluster = Cluster::start(3);
    wait_for_revisions(&cluster.nodes[cluster.leader()]);

    // Racing creates through every node: one wins; the others are told the winner's revision.
    let replies: Vec<(usize, Reply)> = thread::scope(|scope| {
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let node = &cluster.nodes[i % 3];
                scope.spawn(move || (i, put_if(node, "owner", &format!("client{i}"), ("If-None-Match", "*"))))
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("a racer")).collect()
    });
    let winners: Vec<_> = replies.iter().filter(|(_, r)| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    let (winner, won) = winners[0];
    let created = won.number("X-Cete-Revision");
    for (_, reply) in replies.iter().filter(|(_, r)| r.status != 200) {
        assert_eq!(refused_at(reply), created, "a loser is told the revision that created the key");
    }
    let owner = cluster.nodes[2].get(&data("owner"));
    assert_eq!((owner.text(), owner.number("X-Cete-Mod-Revision")), (format!("client{winner}"), created));

    // If-Match: * needs the key; a stale ETag is refused and changes nothing.
    let node = &cluster.nodes[0];
    assert_eq!(refused_at(&put_if(node, "nobody", "x", ("If-Match", "*"))), 0);
    node.get(&data("nobody")).assert_error(404);
    assert_eq!(refused_at(&put_if(node, "owner", "thief", ("If-Match", "\"1\""))), created);
    assert_eq!(refused_at(&delete_if(node, "owner", ("If-Match", "\"1\""))), created);
    assert_eq!(node.get(&data("owner")).text(), format!("client{winner}"));
    let deleted = delete_if(node, "owner", ("If-Match", &format!("\"{created}\"")));
    deleted.assert_success();
    assert!(deleted.number("X-Cete-Revision") > created);
    node.get(&data("owner")).assert_error(404);

    // Conditions that make no sense are bad input, not a failed condition.
    for header in [("If-Match", "1"), ("If-Match", "\"x\""), ("If-None-Match", "\"3\"")] {
        put_if(node, "owner", "x", header).assert_error(400);
    }
}

#[test]
fn the_cli_writes_conditionally_and_says_the_revision_when_it_may_not() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    let grpc = node.addresses.grpc.as_str();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--grpc-address", grpc]);
        cli(&all)
    };

    assert!(run(&["set", "lock", "me", "--if-absent"]).status.success());
    let created = node.get(&data("lock")).number("X-Cete-Mod-Revision");
    let again = run(&["set", "lock", "you", "--if-absent"]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && said.contains(&format!("mod revision is {created}")), "{again:?}");
    assert!(run(&["set", "lock", "me too", "--if-revision", &created.to_string()]).status.success());
    assert!(!run(&["set", "lock", "stale", "--if-revision", &created.to_string()]).status.success());
    assert!(run(&["set", "lock", "still me", "--if-exists"]).status.success());
    assert!(!run(&["set", "free", "x", "--if-exists"]).status.success());
    assert_eq!(node.get(&data("lock")).text(), "still me");

    let current = node.get(&data("lock")).number("X-Cete-Mod-Revision");
    assert!(!run(&["delete", "lock", "--if-revision", &created.to_string()]).status.success());
    assert!(run(&["delete", "lock", "--if-revision", &current.to_string()]).status.success());
    node.get(&data("lock")).assert_error(404);
    // Two conditions at once is a usage error, refused before anything is sent.
    assert!(!run(&["set", "k", "v", "--if-absent", "--if-exists"]).status.success());
}
