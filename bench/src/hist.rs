//! Latency histograms in microseconds (hdrhistogram, 3 significant digits, 1 µs .. 1 h).

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A new latency histogram: 1 µs to one hour, 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail at run time.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Records a duration in microseconds, clamped into the histogram's range.
pub fn record_us(h: &mut Histogram<u64>, d: std::time::Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

/// p50/p90/p99/p99.9/max/mean/count of a histogram, in microseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}
