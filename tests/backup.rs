//! Backups (README, "Backup"): `cete backup FILE` and `GET /v1/backup` write a consistent,
//! checksummed copy of a running node's state while writes go on, and say the revision it was
//! taken at. Read back here with the snapshot file reader, every key and revision is checked
//! against what the cluster holds.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use cete_actors::store::snapshot_file::Pairs;
use cete_actors::store::StoredValue;
use common::{cli, data, temp_dir, wait_for_revisions, Cluster, Node};

/// Every key of a backup file with its value and mod revision, and the revision it holds.
fn read_backup(path: &Path) -> (u64, BTreeMap<String, (Vec<u8>, u64)>) {
    cete_actors::store::snapshot_file::verify(path).expect("the backup is whole");
    let mut pairs = Pairs::open(path).expect("open the backup");
    let revision = pairs.revision().expect("a backup of a store with revisions");
    let keys = pairs
        .by_ref()
        .map(|pair| {
            let (key, record) = pair.expect("a pair");
            let stored = StoredValue::decode(&record, true).expect("a record");
            (key, (stored.value.to_vec(), stored.revisions.expect("revisions").mod_revision))
        })
        .collect();
    (revision, keys)
}

/// Every key of the cluster with its value and mod revision, as `node` reads them.
fn read_cluster(node: &Node) -> (u64, BTreeMap<String, (Vec<u8>, u64)>) {
    let page = node.get("/v1/scan?prefix=").json();
    let keys = page["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let value = pair["value"].as_str().expect("text values").as_bytes().to_vec();
            (pair["key"].as_str().unwrap().to_string(), (value, pair["mod_revision"].as_u64().unwrap()))
        })
        .collect();
    (page["revision"].as_u64().unwrap(), keys)
}

fn backup_with_cli(node: &Node, file: &Path) -> serde_json::Value {
    let output = cli(&["backup", file.to_str().unwrap(), "--grpc-address", &node.addresses.grpc]);
    assert!(output.status.success(), "cete backup failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("its JSON")
}

#[test]
fn a_backup_taken_under_writes_is_a_consistent_copy_at_its_revision() {
    let cluster = Cluster::start(3);
    wait_for_revisions(&cluster.nodes[0]);
    let dir = temp_dir();
    let writing = AtomicBool::new(true);
    let (during, backup_during) = thread::scope(|scope| {
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (node, writing) = (&cluster.nodes[w], &writing);
                scope.spawn(move || {
                    let mut written = 0;
                    while writing.load(Ordering::Relaxed) {
                        node.put(&data(&format!("w{w}/{written:05}")), format!("v{written}")).assert_success();
                        written += 1;
                    }
                    written
                })
            })
            .collect();
        // Let the writes get going, then back up through a follower while they go on.
        common::eventually("writes", common::FORM_TIMEOUT, || {
            (cluster.nodes[0].get("/v1/scan?prefix=w&count_only=true").json()["count"].as_u64() > Some(300))
                .then_some(())
        });
        let file = dir.path().join("during.backup");
        let answer = backup_with_cli(&cluster.nodes[cluster.followers()[0]], &file);
        writing.store(false, Ordering::Relaxed);
        let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
        (written, (answer, file))
    });
    let (answer, file) = backup_during;
    let (revision, keys) = read_backup(&file);
    assert_eq!(answer["revision"], revision);
    assert_eq!(answer["keys"], keys.len() as u64);
    assert!(keys.len() > 300 && keys.len() < during + 2, "{} keys of {during} written", keys.len());
    // Consistent: exactly the state at its revision. Every key in it was last written at or
    // before the revision, and holds what the cluster held then; keys are never rewritten here,
    // so the cluster now holds each of them unchanged, and every key it holds that was written
    // at or before that revision is in the backup.
    let (_, now) = read_cluster(&cluster.nodes[0]);
    for (key, (value, mod_revision)) in &keys {
        assert!(*mod_revision <= revision, "{key} was written after the backup's revision");
        assert_eq!(now.get(key), Some(&(value.clone(), *mod_revision)), "{key}");
    }
    let missing: Vec<_> = now.iter().filter(|(k, (_, m))| *m <= revision && !keys.contains_key(*k)).collect();
    assert!(missing.is_empty(), "written before the backup's revision, missing from it: {missing:?}");

    // Quiet now: a backup over HTTP from another node is the whole state, at the store's revision.
    let reply = cluster.nodes[2].get("/v1/backup");
    reply.assert_success();
    let http_file = dir.path().join("http.backup");
    std::fs::write(&http_file, &reply.body).unwrap();
    let (revision, keys) = read_backup(&http_file);
    assert_eq!(reply.number("X-Cete-Revision"), revision);
    assert_eq!((revision, keys), read_cluster(&cluster.nodes[2]));
}

#[test]
fn a_backup_holds_leases_and_one_that_cannot_be_taken_leaves_no_file() {
    let node = Node::start("node1");
    wait_for_revisions(&node);
    let lease = node.post("/v1/leases", "{\"ttl\":600}").json()["id"].as_str().unwrap().to_string();
    node.put(&format!("{}?lease={lease}", data("leased")), "x").assert_success();
    let dir = temp_dir();
    let file = dir.path().join("node.backup");
    let answer = backup_with_cli(&node, &file);
    assert!(std::fs::read(&file).unwrap().starts_with(b"CETESNAP6"), "a backup's format carries leases and history");
    assert_eq!(answer["keys"], 2, "{answer}");
    // A backup that cannot be taken leaves no file behind, whole or part.
    let gone = cli(&["backup", dir.path().join("none.backup").to_str().unwrap(), "--grpc-address", "127.0.0.1:1"]);
    assert!(!gone.status.success());
    assert!(!dir.path().join("none.backup").exists() && !dir.path().join("none.backup.part").exists());
}
