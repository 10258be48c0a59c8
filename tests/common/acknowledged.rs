//! What a client does through a failover: write until a node acknowledges, retrying only what
//! a client legitimately retries then (503 while the cluster has no leader, no answer from a
//! node that is down or frozen), and remember every acknowledged write to check it later.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use super::{eventually, Cluster, Node, POLL_INTERVAL};

/// Generous bound on a failover with default timeouts (elections after 1-2 s of silence).
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(20);
/// How long one write may take while the cluster is changing leaders before it is retried.
const WRITE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a lagging node may take to apply what it missed.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn data(key: &str) -> String {
    format!("/v1/data/{key}")
}

/// Every write the cluster acknowledged, and what it must read back as.
#[derive(Default)]
pub struct Acknowledged(pub BTreeMap<String, String>);

impl Acknowledged {
    /// PUTs `key` through the serving nodes `via`, in turn, until one acknowledges it. Only a
    /// 503 or no answer (no leader yet, a node down) is retried; any other status fails the
    /// test at once, and none may say "not leader".
    pub fn put(&mut self, cluster: &Cluster, via: &[usize], key: &str, value: &str) {
        let deadline = Instant::now() + FAILOVER_DEADLINE;
        let mut retried = Vec::new();
        for attempt in 0.. {
            let node = &cluster.nodes[via[attempt % via.len()]];
            match node.try_request("PUT", &data(key), value.into(), WRITE_ATTEMPT_TIMEOUT) {
                Ok(reply) if (200..300).contains(&reply.status) => break,
                Ok(reply) if reply.status == 503 => retried.push(format!("503 on {}: {reply:?}", node.id())),
                Ok(reply) => panic!("PUT {key} on {}: {reply:?} (only 503 is retried)", node.id()),
                Err(e) => retried.push(format!("no answer from {}: {e}", node.id())),
            }
            assert!(
                Instant::now() < deadline,
                "PUT {key} not acknowledged within {FAILOVER_DEADLINE:?}; answers seen: {:#?}",
                retried.iter().collect::<BTreeSet<_>>()
            );
            thread::sleep(POLL_INTERVAL);
        }
        assert_never_not_leader(&retried);
        self.0.insert(key.to_string(), value.to_string());
    }

    /// Every acknowledged write reads back on `node` with a linearizable read.
    pub fn assert_on(&self, node: &Node) {
        for (key, value) in &self.0 {
            let got = node.get(&data(key));
            assert_eq!((got.status, got.text()), (200, value.clone()), "{key} on {}", node.id());
        }
    }

    /// `node`'s own copy (serializable reads, no leader asked) holds every acknowledged write.
    pub fn wait_replicated_to(&self, node: &Node) {
        let what = format!("every acknowledged write in {}'s own copy", node.id());
        eventually(&what, CATCH_UP_TIMEOUT, || {
            self.0
                .iter()
                .all(|(key, value)| serializable_get(node, key).as_deref() == Some(value.as_str()))
                .then_some(())
        });
    }
}

fn assert_never_not_leader(retried: &[String]) {
    if !retried.is_empty() {
        let distinct: BTreeSet<&String> = retried.iter().collect();
        eprintln!("{} write attempts retried, answers seen: {distinct:#?}", retried.len());
    }
    for failure in retried {
        let lower = failure.to_lowercase();
        assert!(
            !lower.contains("not leader") && !lower.contains("not the leader") && !lower.contains("forward"),
            "a client was told to find the leader itself: {failure}"
        );
    }
}

/// A possibly stale read of `key` from `node`'s own copy; `None` when missing or failed.
pub fn serializable_get(node: &Node, key: &str) -> Option<String> {
    let path = format!("{}?consistency=serializable", data(key));
    let reply = node.try_request("GET", &path, Vec::new(), Duration::from_secs(5)).ok()?;
    (reply.status == 200).then(|| reply.text())
}
