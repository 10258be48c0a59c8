//! Restores (README, "Backup and restore"): `cete restore FILE` builds a new data directory
//! from a backup, offline; the node started on it forms a new one-node cluster holding exactly
//! the backup's state, and nodes that join it get that state too. A backup that is corrupt or
//! cut short is refused before anything is written.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use cete_actors::store::snapshot_file::Pairs;
use cete_actors::store::StoredValue;
use common::{address_args, cli, data, eventually, temp_dir, wait_for_revisions, Addresses, Cluster, Node};
use common::{NdjsonWatch, FORM_TIMEOUT};
use serde_json::Value;

/// A key as the backup holds it and as scans answer it: value, create and mod revision,
/// version and lease.
type Record = (Vec<u8>, u64, u64, u64, u64);

fn read_backup(path: &Path) -> (u64, BTreeMap<String, Record>) {
    let mut pairs = Pairs::open(path).expect("open the backup");
    let revision = pairs.revision().expect("a backup of a store with revisions");
    let keys = pairs
        .by_ref()
        .map(|pair| {
            let (key, record) = pair.expect("a pair");
            let stored = StoredValue::decode(&record, true).expect("a record");
            let r = stored.revisions.expect("revisions");
            (key, (stored.value.to_vec(), r.create_revision, r.mod_revision, r.version, r.lease))
        })
        .collect();
    (revision, keys)
}

/// Every key as `node` itself holds it (a serializable scan: its own copy, not the leader's).
fn read_node(node: &Node) -> (u64, BTreeMap<String, Record>) {
    let page = node.get("/v1/scan?prefix=&consistency=serializable").json();
    assert_eq!(page["more"], false, "one page holds them all");
    let keys = page["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let n = |field: &str| pair[field].as_u64().unwrap_or_else(|| panic!("{field} in {pair}"));
            let value = pair["value"].as_str().expect("text values").as_bytes().to_vec();
            let record = (value, n("create_revision"), n("mod_revision"), n("version"), n("lease"));
            (pair["key"].as_str().unwrap().to_string(), record)
        })
        .collect();
    (page["revision"].as_u64().unwrap(), keys)
}

/// `cete restore FILE` for a node `id` on `addresses` with its data under `dir`: the flags
/// it is then started with.
fn restore(file: &Path, id: &str, addresses: &Addresses, dir: &Path) -> (std::process::Output, Vec<String>) {
    let mut args = vec![format!("--id={id}")];
    args.extend(address_args(addresses, dir));
    let mut restore = vec!["restore".to_string(), file.display().to_string()];
    restore.extend(args.iter().cloned());
    let output = cli(&restore.iter().map(String::as_str).collect::<Vec<_>>());
    (output, args)
}

/// A 3-node cluster under writes from 3 writers (through every node), with a lease holding
/// 2 keys; backed up through a follower while the writes go on.
fn back_up_under_writes(cluster: &Cluster, file: &Path) -> (Value, String) {
    let leader = &cluster.nodes[cluster.leader()];
    let lease = leader.post("/v1/leases", "{\"ttl\":600}").json()["id"].as_str().unwrap().to_string();
    for key in ["svc/a", "svc/b"] {
        leader.put(&format!("{}?lease={lease}", data(key)), "up").assert_success();
    }
    let writing = AtomicBool::new(true);
    let answer = thread::scope(|scope| {
        for w in 0..3 {
            let (node, writing) = (&cluster.nodes[w], &writing);
            scope.spawn(move || {
                let mut n = 0;
                while writing.load(Ordering::Relaxed) {
                    // Rewrites too: versions above 1 must come back as they were.
                    node.put(&data(&format!("w{w}/{:03}", n % 100)), format!("v{n}")).assert_success();
                    n += 1;
                }
            });
        }
        // Every writer has written each of its 100 keys, and started over.
        eventually("writes and rewrites", FORM_TIMEOUT, || {
            let rewritten = |w| {
                let first = cluster.nodes[0].get(&data(&format!("w{w}/000")));
                first.status == 200 && first.number("X-Cete-Version") > 1
            };
            (0..3).all(rewritten).then_some(())
        });
        let follower = &cluster.nodes[cluster.followers()[0]];
        let output = cli(&["backup", file.to_str().unwrap(), "--grpc-address", &follower.addresses.grpc]);
        writing.store(false, Ordering::Relaxed);
        assert!(output.status.success(), "cete backup: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    });
    (answer, lease)
}

#[test]
fn a_backup_restored_into_a_new_three_node_cluster_holds_every_key_and_revision() {
    let old = Cluster::start(3);
    wait_for_revisions(&old.nodes[0]);
    let dir = temp_dir();
    let file = dir.path().join("cluster.backup");
    let (answer, lease) = back_up_under_writes(&old, &file);
    let (revision, backed_up) = read_backup(&file);
    assert_eq!(answer["revision"], revision);
    assert!(backed_up.len() >= 302, "{} keys", backed_up.len());
    assert!(backed_up.values().any(|r| r.3 > 1), "some key was rewritten before the backup");
    drop(old);

    // Restore node1 of a new cluster, on new ports and a new directory, and start it.
    let node_dir = temp_dir();
    let addresses = Addresses::free();
    let (output, args) = restore(&file, "node1", &addresses, node_dir.path());
    assert!(output.status.success(), "cete restore: {}", String::from_utf8_lossy(&output.stderr));
    let said: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((said["revision"].as_u64(), said["keys"].as_u64()), (Some(revision), Some(backed_up.len() as u64)));
    let mut first = Node::spawn(node_dir, args, Vec::new(), addresses);
    first.wait_ready();
    let cluster = first.get("/v1/cluster").json();
    assert_eq!(cluster["cluster"]["nodes"].as_object().unwrap().len(), 1, "a new one-node cluster: {cluster}");

    // Two more join it as usual, and get the restored state (in a snapshot: the new cluster's
    // log does not hold it).
    let peer = format!("--peer-grpc-address={}", first.addresses.grpc);
    let nodes = [first, Node::start_with("node2", &[&peer]), Node::start_with("node3", &[&peer])];
    for node in &nodes {
        eventually("the restored state on every node", FORM_TIMEOUT, || {
            (read_node(node) == (revision, backed_up.clone())).then_some(())
        });
    }
    let members = nodes[2].get("/v1/cluster").json()["cluster"]["nodes"].as_object().unwrap().len();
    assert_eq!(members, 3);
    // The lease came back with its keys, and the new cluster writes on from the revision.
    let found = nodes[1].get(&format!("/v1/leases/{lease}")).json();
    assert_eq!(found["keys"], serde_json::json!(["svc/a", "svc/b"]), "{found}");
    let written = nodes[2].put(&data("after/restore"), "new");
    written.assert_success();
    assert_eq!(written.number("X-Cete-Revision"), revision + 1);
    // The restored node has the backup's change history: a watch resumes from before the
    // backup, through it, into the new cluster's writes.
    let from = revision - 9;
    let watch = NdjsonWatch::open(&nodes[0], &format!("start_revision={from}"));
    for expected in from..=revision + 1 {
        let change = watch.next_change(FORM_TIMEOUT);
        assert_eq!(change["revision"], expected, "{change}");
        let key = change["data"]["key"].as_str().unwrap();
        if let Some(record) = backed_up.get(key).filter(|record| record.2 == expected) {
            assert_eq!(change["data"]["value"].as_str().unwrap().as_bytes(), record.0.as_slice(), "{change}");
        }
        if expected == revision + 1 {
            assert_eq!((key, &change["data"]["value"]), ("after/restore", &Value::from("new")), "{change}");
        }
    }
    // A node that joined got the state in a snapshot, which carries no history.
    let watch = nodes[1].get(&format!("/v1/watch?start_revision={revision}"));
    assert_eq!(watch.status, 410, "{}", watch.text());
}

/// `file` with one byte flipped at `at`, and cut short at `len`.
fn damaged(file: &Path, dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let bytes = std::fs::read(file).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let flipped_path = dir.join("flipped.backup");
    std::fs::write(&flipped_path, flipped).unwrap();
    let short_path = dir.join("short.backup");
    std::fs::write(&short_path, &bytes[..bytes.len() - 100]).unwrap();
    let empty_path = dir.join("empty.backup");
    std::fs::write(&empty_path, b"").unwrap();
    vec![("a flipped byte", flipped_path), ("cut short", short_path), ("empty", empty_path)]
}

#[test]
fn a_damaged_backup_or_a_used_directory_is_refused_and_nothing_is_written() {
    let node = Node::start("node1");
    wait_for_revisions(&node);
    for n in 0..200 {
        node.put(&data(&format!("k/{n:03}")), format!("value {n}")).assert_success();
    }
    let dir = temp_dir();
    let file = dir.path().join("node.backup");
    let output = cli(&["backup", file.to_str().unwrap(), "--grpc-address", &node.addresses.grpc]);
    assert!(output.status.success(), "cete backup: {}", String::from_utf8_lossy(&output.stderr));

    for (what, bad) in damaged(&file, dir.path()) {
        let target = temp_dir();
        let (output, _) = restore(&bad, "node1", &Addresses::free(), target.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: restored");
        assert!(
            stderr.contains("is not a whole Cete backup") && stderr.contains("nothing was written"),
            "{what}: {stderr}"
        );
        assert!(!target.path().join("data").exists(), "{what}: the data directory was created");
    }

    // A directory that holds anything is never written over.
    let used = temp_dir();
    std::fs::create_dir_all(used.path().join("data")).unwrap();
    std::fs::write(used.path().join("data").join("store.redb"), b"someone's").unwrap();
    let (output, _) = restore(&file, "node1", &Addresses::free(), used.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("is not empty"), "{stderr}");
    assert_eq!(std::fs::read(used.path().join("data").join("store.redb")).unwrap(), b"someone's");

    // A restore stopped half-way leaves a directory that no node starts on.
    let half = temp_dir();
    let data_dir = half.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join(cete_actors::restore::UNFINISHED), b"").unwrap();
    let addresses = Addresses::free();
    let mut args = vec!["--id=node1".to_string()];
    args.extend(address_args(&addresses, half.path()));
    let mut refused = Node::spawn(half, args, Vec::new(), addresses);
    assert!(!refused.wait_exit_within(FORM_TIMEOUT).success());
    assert!(refused.log().contains("holds a restore that did not finish"), "{}", refused.log());

    // And a good one restores (into a directory that exists and is empty).
    let fresh = temp_dir();
    std::fs::create_dir_all(fresh.path().join("data")).unwrap();
    let (output, _) = restore(&file, "node1", &Addresses::free(), fresh.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // A restore is a new cluster of one: joining it elsewhere is a start flag, not a restore's.
    let elsewhere = temp_dir();
    let mut args = vec!["restore".to_string(), file.display().to_string(), "--peer-grpc-address=127.0.0.1:1".into()];
    args.extend(address_args(&Addresses::free(), elsewhere.path()));
    let refused = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success() && !elsewhere.path().join("data").exists());
}

#[test]
fn a_cluster_restored_on_the_old_addresses_never_mixes_with_the_old_one() {
    let mut old = Cluster::start(3);
    wait_for_revisions(&old.nodes[0]);
    for n in 0..20 {
        old.nodes[0].put(&data(&format!("k/{n:02}")), "before").assert_success();
    }
    let dir = temp_dir();
    let file = dir.path().join("old.backup");
    let output = cli(&["backup", file.to_str().unwrap(), "--grpc-address", &old.nodes[0].addresses.grpc]);
    assert!(output.status.success(), "cete backup: {}", String::from_utf8_lossy(&output.stderr));
    // node1 is lost; a node is restored in its place, on its addresses, while node2 and node3
    // of the old cluster run on (and still count node1 a member).
    let addresses = old.nodes[0].addresses.clone();
    old.nodes[0].kill9();
    let node_dir = temp_dir();
    let (output, args) = restore(&file, "node1", &addresses, node_dir.path());
    assert!(output.status.success(), "cete restore: {}", String::from_utf8_lossy(&output.stderr));
    let mut restored = Node::spawn(node_dir, args, Vec::new(), addresses);
    restored.wait_ready();
    restored.put(&data("new/after"), "restored").assert_success();
    let survivor = &old.nodes[1];
    eventually("the old cluster writes on", FORM_TIMEOUT, || {
        (200..300).contains(&survivor.put(&data("old/after"), "old").status).then_some(())
    });
    // The old cluster's leader keeps trying node1's address, and is refused: its status
    // says why, and the restored node logs it.
    eventually("the old cluster is refused", FORM_TIMEOUT, || {
        let status = survivor.get("/v1/status").json();
        let error = status["members"]["node1"]["error"].as_str().unwrap_or_default().to_string();
        error.contains("belongs to cluster").then_some(())
    });
    eventually("the refusal logged", FORM_TIMEOUT, || {
        restored.log().contains("refused a peer's request").then_some(())
    });
    // The restored cluster is still its own: one member, its write, none of the old one's.
    let cluster = restored.get("/v1/cluster").json();
    assert_eq!(cluster["cluster"]["nodes"].as_object().unwrap().len(), 1, "{cluster}");
    assert_eq!(cluster["cluster"]["leader"], "node1", "{cluster}");
    assert_eq!(restored.get(&data("new/after")).text(), "restored");
    assert_eq!(restored.get(&data("old/after")).status, 404);
    assert_eq!(survivor.get(&data("new/after")).status, 404);
}
