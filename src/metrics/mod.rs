//! Prometheus metrics (DESIGN.md section 7), kept in one place and rendered for `/metrics`.
//!
//! Hand-written on atomics rather than a client crate: every label set here is small and known
//! when the gateway starts (routes, statuses, error kinds, limits, reasons) except models,
//! which are capped; observing is then a relaxed atomic add with no lock and no allocation,
//! which matters because the inter-token histogram is hit once per token of every stream.
//! Label handles that depend on a request (a model's histogram) are looked up once per
//! generation, never per event. Each [`Metrics`] is its own registry: tests that start many
//! gateways in one process do not share counters.

mod exposition;
mod histogram;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use exposition::CONTENT_TYPE;
pub use histogram::Histogram;
use histogram::{INTER_TOKEN_BUCKETS, OVERHEAD_BUCKETS, TTFT_BUCKETS};

use crate::upstream::UpstreamError;

/// The `route` label of requests that matched no route: one label for every unknown path,
/// so a scanner cannot grow the series count.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Models with a histogram of their own; later ones share `other`. Without `ALLOWED_MODELS`
/// the model name is whatever clients send, which must not grow the series without bound.
const MAX_MODELS: usize = 32;
const MAX_MODEL_LABEL_LEN: usize = 100;
const OTHER: &str = "other";

/// Statuses are counted in a flat table, `100..=599`.
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500;

/// Why a request was refused for load (`streamgate_rate_limited_total{limit}`).
pub use crate::ratelimit::Limit;

/// The `reason` labels of `streamgate_stream_cancellations_total`: the cancel reasons of
/// [`crate::relay::Finish::Cancelled`], plus streams the shutdown cut short.
pub const CANCEL_REASONS: [&str; 5] = [
    "client_gone",
    "deleted",
    "no_reader",
    "shutting_down",
    OTHER,
];

/// A route label resolved once per request: its index in the routes table and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    index: usize,
    pub name: &'static str,
}

/// Values read from elsewhere at scrape time rather than counted twice.
pub struct Gauges {
    /// Generations running now (concurrency slots held).
    pub active_streams: u32,
    /// Browser streams kept in memory for resume, running or finished.
    pub registry_streams: usize,
}

pub struct Metrics {
    routes: &'static [&'static str],
    /// `[route][status - 100]`; the last route row is [`UNMATCHED_ROUTE`].
    requests: Box<[AtomicU64]>,
    ttft: Mutex<Vec<(String, Arc<Histogram>)>>,
    ttft_other: Arc<Histogram>,
    overhead: Histogram,
    inter_token: Histogram,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    upstream_errors: [AtomicU64; UpstreamError::KINDS.len()],
    rate_limited: [AtomicU64; Limit::ALL.len()],
    cancellations: [AtomicU64; CANCEL_REASONS.len()],
}

impl Metrics {
    /// `routes` are the route patterns the app serves (the `route` label's values).
    pub fn new(routes: &'static [&'static str]) -> Arc<Self> {
        Arc::new(Self {
            routes,
            requests: (0..(routes.len() + 1) * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            ttft: Mutex::new(Vec::new()),
            ttft_other: Arc::new(Histogram::new(TTFT_BUCKETS)),
            overhead: Histogram::new(OVERHEAD_BUCKETS),
            inter_token: Histogram::new(INTER_TOKEN_BUCKETS),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            upstream_errors: Default::default(),
            rate_limited: Default::default(),
            cancellations: Default::default(),
        })
    }

    /// The route label for a matched pattern (`HttpRequest::match_pattern`), or
    /// [`UNMATCHED_ROUTE`].
    pub fn route(&self, pattern: Option<&str>) -> Route {
        let index = pattern
            .and_then(|p| self.routes.iter().position(|r| *r == p))
            .unwrap_or(self.routes.len());
        Route {
            index,
            name: self.routes.get(index).copied().unwrap_or(UNMATCHED_ROUTE),
        }
    }

    /// Counts an answered request (`streamgate_requests_total`).
    pub fn request(&self, route: Route, status: u16) {
        let slot = usize::from(status.clamp(STATUS_MIN, 599) - STATUS_MIN);
        if let Some(counter) = self.requests.get(route.index * STATUS_SLOTS + slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The time-to-first-token histogram of `model`; look it up once per generation.
    pub fn ttft_for(&self, model: &str) -> Arc<Histogram> {
        if model.len() > MAX_MODEL_LABEL_LEN || model == OTHER {
            return Arc::clone(&self.ttft_other);
        }
        let mut models = self.ttft.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, histogram)) = models.iter().find(|(name, _)| name == model) {
            return Arc::clone(histogram);
        }
        if models.len() >= MAX_MODELS {
            return Arc::clone(&self.ttft_other);
        }
        let histogram = Arc::new(Histogram::new(TTFT_BUCKETS));
        models.push((model.to_owned(), Arc::clone(&histogram)));
        histogram
    }

    pub fn overhead(&self, value: Duration) {
        self.overhead.observe(value);
    }

    pub fn inter_token(&self, gap: Duration) {
        self.inter_token.observe(gap);
    }

    pub fn tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    /// Counts a failed upstream attempt by [`UpstreamError::kind`].
    pub fn upstream_error(&self, error: &UpstreamError) {
        let kind = error.kind();
        if let Some(i) = UpstreamError::KINDS.iter().position(|k| *k == kind) {
            self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request refused by `limit` (`streamgate_rate_limited_total`).
    pub fn rate_limited(&self, limit: Limit) {
        if let Some(i) = Limit::ALL.iter().position(|l| *l == limit) {
            self.rate_limited[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a generation ended before its upstream finished, for `reason` (one of
    /// [`CANCEL_REASONS`]; anything else counts as `other`).
    pub fn cancelled(&self, reason: &str) {
        let i = CANCEL_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(CANCEL_REASONS.len() - 1);
        self.cancellations[i].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[&str] = &["/a", "/b/{id}"];

    #[test]
    fn an_unknown_path_is_counted_under_one_label() {
        let metrics = Metrics::new(ROUTES);
        assert_eq!(metrics.route(Some("/b/{id}")).name, "/b/{id}");
        assert_eq!(metrics.route(None).name, UNMATCHED_ROUTE);
        assert_eq!(metrics.route(Some("/nope")).name, UNMATCHED_ROUTE);
        metrics.request(metrics.route(None), 404);
        metrics.request(metrics.route(Some("/zzz")), 404);
        let text = metrics.render(&Gauges {
            active_streams: 0,
            registry_streams: 0,
        });
        assert!(
            text.contains("streamgate_requests_total{route=\"unmatched\",status=\"404\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn models_past_the_cap_share_one_histogram() {
        let metrics = Metrics::new(ROUTES);
        for i in 0..MAX_MODELS {
            metrics.ttft_for(&format!("m{i}"));
        }
        let again = metrics.ttft_for("m0");
        assert!(!Arc::ptr_eq(&again, &metrics.ttft_other));
        assert!(Arc::ptr_eq(
            &metrics.ttft_for("one-too-many"),
            &metrics.ttft_other
        ));
        assert!(Arc::ptr_eq(
            &metrics.ttft_for(&"x".repeat(MAX_MODEL_LABEL_LEN + 1)),
            &metrics.ttft_other
        ));
    }

    #[test]
    fn an_unknown_cancel_reason_counts_as_other() {
        let metrics = Metrics::new(ROUTES);
        metrics.cancelled("cancelled");
        assert_eq!(
            metrics.cancellations[CANCEL_REASONS.len() - 1].load(Ordering::Relaxed),
            1
        );
    }
}
