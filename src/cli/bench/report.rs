//! What a bench run measured, and how it is shown: throughput, latency percentiles, errors.
//!
//! Every client keeps the latency of each successful request (microseconds, 4 bytes each) and
//! counts its errors by message; the tallies are merged once, at the end. Percentiles are exact
//! (nearest rank over the sorted latencies), so a run's p999 is a latency some request really had.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Distinct error messages a client remembers; later new ones only add to the count.
const MAX_DISTINCT_ERRORS: usize = 16;
/// Distinct error messages shown in the report, the most frequent first.
const SHOWN_ERRORS: usize = 5;

/// What one client saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of each successful request, in microseconds.
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    /// Error message -> count, for at most [`MAX_DISTINCT_ERRORS`] messages.
    error_messages: HashMap<String, u64>,
}

impl Tally {
    pub fn success(&mut self, latency: Duration) {
        self.latencies_us.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        let distinct = self.error_messages.len();
        match self.error_messages.get_mut(&message) {
            Some(count) => *count += 1,
            None if distinct < MAX_DISTINCT_ERRORS => {
                self.error_messages.insert(message, 1);
            }
            None => {}
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        for (message, count) in other.error_messages {
            *self.error_messages.entry(message).or_default() += count;
        }
    }
}

/// The latency of the request at percentile `p` (0-100) of `sorted`, by nearest rank.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    // In parts per million and integers: 99.9 / 100 * 1000 is 999.0000000000001 in floats.
    let per_million = (p.clamp(0.0, 100.0) * 10_000.0).round() as u128;
    let rank = (per_million * sorted.len() as u128).div_ceil(1_000_000) as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latencies in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyMs {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencyMs {
    pub fn of(latencies_us: &mut [u32]) -> LatencyMs {
        latencies_us.sort_unstable();
        let ms = |us: u32| f64::from(us) / 1000.0;
        let sum: u64 = latencies_us.iter().map(|&us| u64::from(us)).sum();
        let mean = if latencies_us.is_empty() { 0.0 } else { sum as f64 / latencies_us.len() as f64 / 1000.0 };
        LatencyMs {
            mean,
            p50: ms(percentile(latencies_us, 50.0)),
            p90: ms(percentile(latencies_us, 90.0)),
            p99: ms(percentile(latencies_us, 99.0)),
            p999: ms(percentile(latencies_us, 99.9)),
            max: ms(latencies_us.last().copied().unwrap_or(0)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorSample {
    pub message: String,
    pub count: u64,
}

/// How the run was set up, echoed in the report so a saved JSON line explains itself.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub target: &'static str,
    pub protocol: &'static str,
    pub workload: super::workload::Workload,
    pub consistency: Option<&'static str>,
    pub clients: usize,
    pub endpoints: Vec<String>,
    pub value_size: usize,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub setup: Setup,
    /// Successful requests.
    pub requests: u64,
    pub errors: u64,
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub throughput: f64,
    pub latency_ms: LatencyMs,
    pub error_samples: Vec<ErrorSample>,
    /// The lease load beside the run (`--leases`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<super::leases::LeaseReport>,
}

impl Summary {
    pub fn new(setup: Setup, mut tally: Tally, elapsed: Duration) -> Summary {
        let requests = tally.latencies_us.len() as u64;
        let elapsed_secs = elapsed.as_secs_f64();
        let throughput = if elapsed_secs > 0.0 { requests as f64 / elapsed_secs } else { 0.0 };
        let mut error_samples: Vec<ErrorSample> =
            tally.error_messages.into_iter().map(|(message, count)| ErrorSample { message, count }).collect();
        error_samples.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.message.cmp(&b.message)));
        error_samples.truncate(SHOWN_ERRORS);
        Summary {
            setup,
            requests,
            errors: tally.errors,
            elapsed_secs,
            throughput,
            latency_ms: LatencyMs::of(&mut tally.latencies_us),
            error_samples,
            leases: None,
        }
    }

    /// The report for people, several lines ending with a newline.
    pub fn text(&self) -> String {
        let setup = &self.setup;
        let consistency = setup.consistency.map(|c| format!(", {c}")).unwrap_or_default();
        let l = &self.latency_ms;
        let mut text = format!(
            "{} against {} over {} ({} clients, {} endpoint(s){consistency})\n",
            setup.workload.name(),
            setup.target,
            setup.protocol,
            setup.clients,
            setup.endpoints.len()
        );
        let _ =
            writeln!(text, "  requests    {} ok, {} failed in {:.2} s", self.requests, self.errors, self.elapsed_secs);
        let _ = writeln!(text, "  throughput  {:.1} req/s", self.throughput);
        let _ = writeln!(
            text,
            "  latency ms  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}",
            l.mean, l.p50, l.p90, l.p99, l.p999, l.max
        );
        for sample in &self.error_samples {
            let _ = writeln!(text, "  error ({}x) {}", sample.count, sample.message);
        }
        if let Some(leases) = &self.leases {
            text.push_str(&leases.text(self.elapsed_secs));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 500);
        assert_eq!(percentile(&sorted, 90.0), 900);
        assert_eq!(percentile(&sorted, 99.0), 990);
        assert_eq!(percentile(&sorted, 99.9), 999);
        assert_eq!(percentile(&sorted, 100.0), 1000);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 99.9), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn a_few_slow_requests_show_in_the_tail_only() {
        let mut latencies = vec![1000u32; 995];
        latencies.extend([50_000; 5]);
        latencies.reverse();
        let l = LatencyMs::of(&mut latencies);
        assert_eq!((l.p50, l.p99, l.p999, l.max), (1.0, 1.0, 50.0, 50.0));
        assert!((l.mean - 1.245).abs() < 1e-9, "{}", l.mean);
    }

    #[test]
    fn errors_are_counted_by_message_and_bounded() {
        let mut tally = Tally::default();
        for i in 0..40 {
            tally.error(format!("error {}", i % 20));
        }
        tally.error("error 0".into());
        assert_eq!(tally.errors, 41);
        assert_eq!(tally.error_messages.len(), MAX_DISTINCT_ERRORS);
        assert_eq!(tally.error_messages["error 0"], 3);
    }

    #[test]
    fn the_summary_merges_clients_and_computes_throughput() {
        let mut total = Tally::default();
        for client in 0..2 {
            let mut tally = Tally::default();
            for _ in 0..50 {
                tally.success(Duration::from_micros(2000 + client));
            }
            tally.error("timeout".into());
            total.merge(tally);
        }
        let setup = Setup {
            target: "cete",
            protocol: "http",
            workload: super::super::workload::Workload::Put,
            consistency: None,
            clients: 2,
            endpoints: vec!["127.0.0.1:8000".into()],
            value_size: 128,
        };
        let summary = Summary::new(setup, total, Duration::from_secs(2));
        assert_eq!((summary.requests, summary.errors), (100, 2));
        assert_eq!(summary.throughput, 50.0);
        assert_eq!(summary.error_samples, vec![ErrorSample { message: "timeout".into(), count: 2 }]);
        let json = serde_json::to_value(&summary).expect("summary as JSON");
        assert_eq!(json["workload"], "put");
        assert_eq!(json["latency_ms"]["max"], 2.001);
        assert!(summary.text().contains("50.0 req/s"), "{}", summary.text());
    }
}
