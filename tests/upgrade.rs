//! A data directory written by the build on openraft 0.9 (`tests/fixtures/datadir-0.9`, see its
//! README) opens on this one: its log entries, vote, committed hint, membership and snapshot
//! metadata are openraft types in MessagePack, and openraft's serde derives promise no stable
//! format, so this is what tells whether a new openraft pin still reads them. Run it again
//! whenever the pin moves.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{temp_dir, Addresses, Node, READY_TIMEOUT};

/// The raft address the fixture's node ran on (its membership records it).
const FIXTURE_RAFT_ADDRESS: &str = "127.0.0.1:47100";

/// A copy of the fixture as the data directory of a new temp dir (never opened in place).
fn copy_of_the_fixture() -> tempfile::TempDir {
    let dir = temp_dir();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadir-0.9");
    copy_dir(&fixture, &dir.path().join("data"));
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}

/// `cete start` as node1 on `dir`'s data directory, the fixture's raft address, and free ports
/// for gRPC and HTTP; ready to serve.
fn start_on(dir: tempfile::TempDir, raft_address: &str) -> Node {
    let free = Addresses::free();
    let addresses = Addresses { raft: raft_address.to_string(), ..free };
    let args = vec![
        "--id=node1".to_string(),
        format!("--raft-address={}", addresses.raft),
        format!("--grpc-address={}", addresses.grpc),
        format!("--http-address={}", addresses.http),
        format!("--data-directory={}", dir.path().join("data").display()),
    ];
    let mut node = Node::spawn(dir, args, Vec::new(), addresses);
    // The fixture's raft address is fixed, and in Linux's ephemeral range: another test's
    // outgoing connection may hold that port for a moment. Start again until it is free.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match node.try_wait_ready() {
            Ok(()) => return node,
            Err(_) if node.lost_a_port() && Instant::now() < deadline => node.relaunch(),
            Err(why) => panic!("node1 on the 0.9 data directory did not become ready: {why}\n{}", node.log()),
        }
    }
}

/// What the fixture holds: some keys from its snapshot, some from the log after it (the
/// deletes of `key/1`..`key/10` and the binary value came after the snapshot at index 199).
fn assert_fixture_data(node: &Node) {
    assert_eq!(node.get("/v1/data/key/42").text(), "value-42");
    node.get("/v1/data/key/5").assert_error(404);
    assert_eq!(node.get("/v1/data/key/250").text(), "value-250");
    let binary = node.get("/v1/data/binary");
    assert_eq!(binary.status, 200, "{binary:?}");
    assert_eq!(binary.body, vec![0xff, 0x00, 0x01]);
}

#[test]
fn a_data_directory_of_the_0_9_build_opens_and_takes_new_writes_that_survive_a_restart() {
    let mut node = start_on(copy_of_the_fixture(), FIXTURE_RAFT_ADDRESS);
    assert_fixture_data(&node);

    node.put("/v1/data/after-upgrade", "written on 0.10").assert_success();
    node.stop();
    node.restart();
    assert_eq!(node.get("/v1/data/after-upgrade").text(), "written on 0.10");
    assert_fixture_data(&node);

    // Its state had no revisions: the node (leading alone) starts them, and every key that
    // was there is stamped as created at the first revision; writes count on from there.
    let stamped = common::eventually("revisions started on the old state", Duration::from_secs(30), || {
        let reply = node.get("/v1/data/key/42");
        reply.header("X-Cete-Revision").is_some().then_some(reply)
    });
    let key = |reply: &common::Reply| {
        ["X-Cete-Create-Revision", "X-Cete-Mod-Revision", "X-Cete-Version"].map(|name| reply.number(name))
    };
    assert_eq!(key(&stamped), [1, 1, 1], "{:?}", stamped.headers);
    node.put("/v1/data/key/42", "rewritten").assert_success();
    let rewritten = node.get("/v1/data/key/42");
    let [create, modified, version] = key(&rewritten);
    assert_eq!((create, version), (1, 2));
    assert!(modified > 1 && modified == rewritten.number("X-Cete-Revision"), "{:?}", rewritten.headers);
    node.stop();
    node.restart();
    assert_eq!(key(&node.get("/v1/data/key/42")), [1, modified, 2], "the revisions survive a restart");
}

/// Without its store the node rebuilds the state from the 0.9 snapshot and log: openraft
/// installs the snapshot `get_current_snapshot` hands it (the very file, which must not be
/// copied onto itself), then re-applies the log after it. Then the same again, restarted.
///
/// A one-node cluster never dials its own raft address, and Cete takes that address from the
/// flag, so this runs on a free port (the membership keeps recording 47100): the other test
/// may hold 47100 at the same time.
#[test]
fn a_0_9_data_directory_without_its_store_is_rebuilt_from_its_snapshot_and_log() {
    let dir = copy_of_the_fixture();
    std::fs::remove_file(dir.path().join("data/store.redb")).expect("remove the store");
    let snapshots = dir.path().join("data/snapshots");
    let snapshot_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir)
            .expect("read the snapshots")
            .map(|entry| entry.expect("an entry"))
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".data"))
            .map(|entry| entry.metadata().expect("metadata").len())
            .sum()
    };
    let before = snapshot_bytes(&snapshots);
    let mut node = start_on(dir, &common::local(common::free_port()));
    assert_fixture_data(&node);
    let log = node.log();
    assert!(log.contains("installed snapshot snapshot-1-199-"), "the store was not restored from the snapshot:\n{log}");
    assert!(snapshot_bytes(&node.dir().join("data/snapshots")) >= before, "the snapshot file lost bytes");

    node.stop();
    std::fs::remove_file(node.dir().join("data/store.redb")).expect("remove the store again");
    node.restart();
    assert_fixture_data(&node);
}
