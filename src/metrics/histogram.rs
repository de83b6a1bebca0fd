//! A Prometheus histogram on atomics: observing is a bucket search and three relaxed atomic
//! adds, with no lock, so it can sit on the per-token path of every stream at once.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) for times to first token: a cached answer in milliseconds, a
/// reasoning model that thinks for minutes, up to the default first-token timeout (300 s).
pub const TTFT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Upper bounds (seconds) for the gateway's own share of the first token: it should be well
/// under a millisecond, and a few tens of milliseconds is already a problem (Nagle is ~40 ms).
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (seconds) between two tokens: fast models stream every few milliseconds, and
/// the default idle timeout cuts a stream after 60 s of silence.
pub const INTER_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Histogram {
    /// Upper bounds in nanoseconds, ascending; compared as integers on the hot path.
    bounds_ns: Box<[u64]>,
    bounds: &'static [f64],
    /// One count per bound, plus one for `+Inf`; not cumulative (rendering adds them up).
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds_ns: bounds.iter().map(|s| (s * 1e9) as u64).collect(),
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        // `le` buckets: a value equal to a bound belongs to that bound's bucket.
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines; `labels` is `key="value",` pairs
    /// (with the trailing comma) or empty.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        // `_count` is the `+Inf` bucket by definition: both come from the same loads, so a
        // scrape racing an observation still sees them agree.
        cumulative += self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.trim_end_matches(','))
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_is_counted_in_that_bounds_bucket() {
        let histogram = Histogram::new(&[0.1, 1.0]);
        histogram.observe(Duration::from_millis(100));
        histogram.observe(Duration::from_millis(500));
        histogram.observe(Duration::from_secs(5));
        let mut out = String::new();
        histogram.render(&mut out, "h", "model=\"m\",");
        assert_eq!(
            out,
            "h_bucket{model=\"m\",le=\"0.1\"} 1\n\
             h_bucket{model=\"m\",le=\"1\"} 2\n\
             h_bucket{model=\"m\",le=\"+Inf\"} 3\n\
             h_sum{model=\"m\"} 5.6\n\
             h_count{model=\"m\"} 3\n"
        );
    }

    #[test]
    fn an_unlabelled_histogram_renders_without_braces_on_sum_and_count() {
        let histogram = Histogram::new(&[1.0]);
        histogram.observe(Duration::from_secs(2));
        let mut out = String::new();
        histogram.render(&mut out, "h", "");
        assert!(out.contains("h_bucket{le=\"1\"} 0\n"), "{out}");
        assert!(out.contains("h_sum 2\nh_count 1\n"), "{out}");
        assert_eq!(histogram.count(), 1);
    }
}
