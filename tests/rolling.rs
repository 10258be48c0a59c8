//! Moving the leadership without an outage: by hand (`cete leader transfer`, the HTTP and gRPC
//! calls), and by a SIGTERM to the leader, which hands its leadership over before it stops, so
//! that a rolling restart of every node under a steady write load fails no write and stalls
//! none for an election.
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{block_on, cli_ok, eventually, node_metric, try_http_within, Acknowledged, Cluster, FORM_TIMEOUT};

const WRITERS: usize = 6;
/// One attempt of a write; one that takes longer is reported as a stall anyway.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

fn leader_name(cluster: &Cluster) -> String {
    cluster.nodes[cluster.leader()].id()
}

fn wait_for_leader(cluster: &Cluster, name: &str) {
    eventually(&format!("{name} leads, agreed by all"), FORM_TIMEOUT, || (leader_name(cluster) == name).then_some(()));
}

#[test]
fn the_leadership_moves_by_hand_over_the_cli_http_and_grpc_from_any_node() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers = cluster.followers();
    let (first, second) = (followers[0], followers[1]);

    // The CLI, through a follower, names the target.
    let target = cluster.nodes[first].id();
    let printed = cli_ok(&["leader", "transfer", &target, "--grpc-address", &cluster.nodes[second].addresses.grpc]);
    let printed: serde_json::Value = serde_json::from_str(&printed).expect("the CLI prints JSON");
    assert_eq!(printed, serde_json::json!({ "leader": target }));
    wait_for_leader(&cluster, &target);

    // HTTP, through the new leader itself, without a body: the best follower takes over.
    let reply = cluster.nodes[first].post("/v1/leader/transfer", Vec::new());
    reply.assert_success();
    let moved_to = reply.json()["leader"].as_str().expect("the leader's name").to_string();
    assert_ne!(moved_to, target, "an empty transfer moves the leadership away from the leader");
    wait_for_leader(&cluster, &moved_to);

    // gRPC, through whichever node, back to the first leader.
    let back = cluster.nodes[leader].id();
    let answered = block_on(async {
        let mut client = cluster.nodes[first].grpc_client().await;
        let request = cete_proto::kvs::TransferLeaderRequest { id: back.clone() };
        client.transfer_leader(request).await.expect("TransferLeader").into_inner().leader
    });
    assert_eq!(answered, back);
    wait_for_leader(&cluster, &back);
    cluster.nodes[second].put("/v1/data/after-transfers", "ok").assert_success();

    // Bad requests get a clear JSON error, and move nothing.
    let unknown = cluster.nodes[second].post("/v1/leader/transfer", br#"{"id":"node9"}"#.to_vec());
    unknown.assert_error(404);
    assert!(unknown.text().contains("node9"), "{unknown:?}");
    cluster.nodes[second].post("/v1/leader/transfer", b"node2".to_vec()).assert_error(400);
    cluster.nodes[second].get("/v1/leader/transfer").assert_error(405);
    assert_eq!(leader_name(&cluster), back);
}

/// What every writer saw: the acknowledged writes, the slowest, and anything that failed.
#[derive(Default)]
struct Seen {
    acknowledged: Acknowledged,
    latencies: Vec<Duration>,
    failures: Vec<String>,
    /// Attempts that got no answer (their node was stopping), and how long each waited.
    no_answer: Vec<String>,
}

/// Writes one key after another until `stop`, each through the serving nodes in turn from
/// `first`: a write that gets no answer (its node is stopping) goes to the next serving node at
/// once, as a client with several endpoints does; any status but 2xx is a failed write.
fn write_until(stop: &AtomicBool, serving: &Mutex<Vec<String>>, writer: usize, seen: &Mutex<Seen>) {
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let (key, value) = (format!("rolling/{writer}/{i}"), format!("v{i}"));
        let started = Instant::now();
        let mut attempt = writer;
        loop {
            let endpoints = serving.lock().expect("serving").clone();
            let http = &endpoints[attempt % endpoints.len()];
            let url = format!("http://{http}/v1/data/{key}");
            match try_http_within(reqwest::Method::PUT, &url, value.clone().into(), ATTEMPT_TIMEOUT) {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    let mut seen = seen.lock().expect("seen");
                    seen.latencies.push(started.elapsed());
                    seen.acknowledged.0.insert(key.clone(), value.clone());
                    break;
                }
                Ok(reply) => {
                    seen.lock().expect("seen").failures.push(format!("PUT {key} on {http}: {reply:?}"));
                    break;
                }
                Err(e) => {
                    let waited = started.elapsed();
                    seen.lock().expect("seen").no_answer.push(format!("PUT {key} on {http} after {waited:?}: {e}"));
                    attempt += 1;
                    assert!(started.elapsed() < FORM_TIMEOUT, "PUT {key} found no serving node");
                }
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn a_rolling_restart_under_writes_fails_no_write_and_costs_one_election_per_leader_stopped() {
    let mut cluster = Cluster::start(3);
    let first_leader = cluster.leader();
    let serving = Arc::new(Mutex::new(cluster.nodes.iter().map(|n| n.addresses.http.clone()).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (stop, serving, seen) = (stop.clone(), serving.clone(), seen.clone());
            thread::spawn(move || write_until(&stop, &serving, writer, &seen))
        })
        .collect();

    // The leader first, then the others, as an operator upgrading the cluster might; each one
    // is stopped with SIGTERM, restarted on its data, and waited for until ready.
    let mut order = vec![first_leader];
    order.extend((0..cluster.nodes.len()).filter(|&i| i != first_leader));
    let mut leaders_stopped = 0;
    let acknowledged = || seen.lock().expect("seen").latencies.len();
    for &i in &order {
        let before = acknowledged();
        eventually("writes go on", FORM_TIMEOUT, || (acknowledged() > before + 50).then_some(()));
        let was_leader = cluster.agreed_leader() == Some(i);
        leaders_stopped += usize::from(was_leader);
        let http = cluster.nodes[i].addresses.http.clone();
        serving.lock().expect("serving").retain(|a| *a != http);
        let status = cluster.nodes[i].stop();
        assert!(status.success(), "{} exited with {status}", cluster.nodes[i].id());
        if was_leader {
            let log = cluster.nodes[i].log();
            assert!(log.contains("handed the leadership over"), "the stopping leader did not hand over:\n{log}");
        }
        cluster.nodes[i].restart();
        serving.lock().expect("serving").push(http);
    }
    let before = acknowledged();
    eventually("writes after the last restart", FORM_TIMEOUT, || (acknowledged() > before + 50).then_some(()));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("a writer");
    }

    let seen = seen.lock().expect("seen");
    let mut sorted = seen.latencies.clone();
    sorted.sort();
    let slowest = *sorted.last().expect("writes were made");
    eprintln!(
        "rolling restart of 3 nodes ({leaders_stopped} of them leading when stopped): {} writes, p50 {:?}, \
         p99 {:?}, p99.9 {:?}, max {slowest:?}; {} attempts found their node stopping and went to another",
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        percentile(&sorted, 0.999),
        seen.no_answer.len()
    );
    eprintln!("attempts without an answer: {:#?}", seen.no_answer);
    assert!(leaders_stopped >= 1, "no leader was stopped");
    assert!(seen.failures.is_empty(), "failed writes: {:#?}", seen.failures.iter().collect::<BTreeSet<_>>());
    // Every stop of a leader cost exactly one election, its successor's, and nothing waited
    // for an election timeout (a follower's restart raises no term with PreVote). The
    // latencies above are printed, not asserted: this suite shares two cores with many
    // clusters, and the 500 ms target is measured on a quiet host (README, "Moving the leader").
    let term = node_metric(&cluster.nodes[cluster.leader()], "cete_raft_term") as usize;
    assert_eq!(term, 1 + leaders_stopped, "elections beyond one per handover (slowest write: {slowest:?})");
    for node in &cluster.nodes {
        seen.acknowledged.wait_replicated_to(node);
    }
    seen.acknowledged.assert_on(&cluster.nodes[cluster.leader()]);
}
