//! PreVote: a follower cut off from the others campaigns only after it has asked whether it
//! could win (Raft thesis 9.6), so when it is healed it rejoins without raising the term and
//! deposing a healthy leader. Without PreVote it would come back with a term raised by every
//! election it started alone, and force an election on the cluster.
//!
//! The follower is cut off with the `raft-isolate` failpoint (all its Raft traffic, in and out,
//! fails as if the network were down), which only a failpoints build has.
#![cfg(feature = "failpoints")]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{applied_index, eventually, node_metric, Cluster, CATCH_UP_TIMEOUT};

/// Long past the follower's election timeout (1-2 s): cut off this long, it would have started
/// two or more elections of its own without PreVote.
const CUT_OFF_FOR: Duration = Duration::from_secs(5);

#[test]
fn a_follower_cut_off_for_five_seconds_and_healed_does_not_raise_the_term() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = cluster.followers()[0];
    let leader_node = &cluster.nodes[leader];
    leader_node.put("/v1/data/before", "cut").assert_success();
    let term = node_metric(leader_node, "cete_raft_term");

    cluster.nodes[follower].arm_failpoint("raft-isolate", "return");
    // The other two keep taking writes while it is away.
    let healed_at = Instant::now() + CUT_OFF_FOR;
    let mut written = 0;
    while Instant::now() < healed_at {
        leader_node.put(&format!("/v1/data/while-cut/{written}"), "v").assert_success();
        written += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let isolated_term = node_metric(&cluster.nodes[follower], "cete_raft_term");
    cluster.nodes[follower].disarm_failpoint("raft-isolate");

    // It catches up with what it missed, under the same leader, in the same term.
    let target = applied_index(leader_node);
    eventually("the healed follower catches up", CATCH_UP_TIMEOUT, || {
        (applied_index(&cluster.nodes[follower]) >= target).then_some(())
    });
    assert_eq!(isolated_term, term, "the cut-off follower raised its own term");
    assert_eq!(cluster.leader(), leader, "the leader changed");
    for node in &cluster.nodes {
        assert_eq!(node_metric(node, "cete_raft_term"), term, "the term on {} moved", node.id());
    }
    assert!(written > 0);
    let reply = cluster.nodes[follower].get(&format!("/v1/data/while-cut/{}", written - 1));
    assert_eq!((reply.status, reply.text()), (200, "v".to_string()));
}
