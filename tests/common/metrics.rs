//! Reading the Prometheus text exposition format that `/v1/metrics` and gRPC `Metrics` give.

/// The value of the series `name` whose labels include all of `labels`, summed over every
/// series that matches (so a counter can be asked for without all its labels). A wanted
/// label value ending in `*` matches by prefix (`("endpoint", "/v1/data*")`).
/// `None` when no series matches.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let wanted = labels.iter().all(|(label, wanted)| match wanted.strip_suffix('*') {
            Some(prefix) => series_labels.contains(&format!("{label}=\"{prefix}")),
            None => series_labels.contains(&format!("{label}=\"{wanted}\"")),
        });
        if wanted {
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

/// [`metric`] that must be there.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in the metrics:\n{text}"))
}

/// `name` in `node`'s `/v1/metrics` now (0 when it cannot be read).
pub fn node_metric(node: &super::Node, name: &str) -> f64 {
    let reply = node.get("/v1/metrics");
    metric(&reply.text(), name, &[]).unwrap_or(0.0)
}

/// The index `node` has applied up to, from its metrics.
pub fn applied_index(node: &super::Node) -> u64 {
    node_metric(node, "cete_raft_applied_index") as u64
}

/// Waits until `node`'s last snapshot covers `index`: an on-demand snapshot must have been
/// built, not merely answered (no snapshot is due on its own this early).
pub fn assert_snapshot_covers(node: &super::Node, index: u64) {
    let what = format!("a snapshot of {} covering index {index}", node.id());
    super::eventually(&what, std::time::Duration::from_secs(10), || {
        (node_metric(node, "cete_raft_snapshot_index") as u64 >= index).then_some(())
    });
}
