//! Request-rate limits for requests that start a generation: per client (GCRA with
//! `RATE_LIMIT_RPM` and `RATE_LIMIT_BURST`, keyed by [`ClientId`]) and for all clients
//! together (`GLOBAL_RATE_LIMIT_RPS`). Also the one place where every refusal by a limit,
//! rate or concurrency, becomes an answer: [`refuse`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::limits::ClientId;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// How often the per-client table forgets clients whose bucket is full again. A client
/// that is forgotten loses nothing: a fresh entry is exactly a full bucket.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `RATE_LIMIT_RPM` / `RATE_LIMIT_BURST`, for this client.
    ClientRate,
    /// `GLOBAL_RATE_LIMIT_RPS`, for all clients together.
    GlobalRate,
    /// `MAX_STREAMS_PER_CLIENT`.
    ClientStreams,
    /// `MAX_STREAMS`.
    TotalStreams,
}

impl Limit {
    pub const ALL: [Limit; 4] = [
        Limit::ClientRate,
        Limit::GlobalRate,
        Limit::ClientStreams,
        Limit::TotalStreams,
    ];

    /// A stable name, fit for a metric label (`streamgate_rate_limited_total{limit}`).
    pub fn label(self) -> &'static str {
        match self {
            Limit::ClientRate => "client_rate",
            Limit::GlobalRate => "global_rate",
            Limit::ClientStreams => "client_streams",
            Limit::TotalStreams => "total_streams",
        }
    }
}

/// The answer to a request a limit refused. Every refusal by a limit is built here and only
/// here, so this is the place to count them.
///
/// `cap` is the limit as a client can use it (`X-RateLimit-Limit`); it is `None` where a
/// number would mislead, such as the global limit that the client shares with everyone.
pub fn refuse(
    metrics: &Metrics,
    limit: Limit,
    message: String,
    retry_after: Duration,
    cap: Option<u32>,
) -> ApiError {
    metrics.rate_limited(limit);
    match limit {
        // DESIGN section 4: the gateway being full is a 503, not the client's fault.
        Limit::TotalStreams => ApiError::Unavailable(message),
        Limit::ClientRate | Limit::GlobalRate | Limit::ClientStreams => ApiError::RateLimited {
            message,
            retry_after_secs: whole_seconds_up(retry_after),
            limit: cap,
            remaining: cap.map(|_| 0),
        },
    }
}

/// `Retry-After` is in whole seconds: rounding down would invite a retry that is refused
/// again, and `0` would invite a busy loop.
pub fn whole_seconds_up(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

pub struct RateLimits {
    per_client: Option<DefaultKeyedRateLimiter<ClientId>>,
    global: Option<DefaultDirectRateLimiter>,
    rpm: u32,
    burst: u32,
    global_rps: u32,
    metrics: Arc<Metrics>,
}

impl RateLimits {
    /// A limit of `0` is off. A burst of `0` is taken as `1`: a bucket that holds nothing
    /// would refuse every request.
    pub fn new(rpm: u32, burst: u32, global_rps: u32, metrics: Arc<Metrics>) -> Arc<Self> {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let per_client = NonZeroU32::new(rpm)
            .map(|rpm| RateLimiter::keyed(Quota::per_minute(rpm).allow_burst(burst)));
        let global =
            NonZeroU32::new(global_rps).map(|rps| RateLimiter::direct(Quota::per_second(rps)));
        Arc::new(Self {
            per_client,
            global,
            rpm,
            burst: burst.get(),
            global_rps,
            metrics,
        })
    }

    pub fn from_settings(settings: &Settings, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::new(
            settings.rate_limit_rpm,
            settings.rate_limit_burst,
            settings.global_rate_limit_rps,
            metrics,
        )
    }

    /// Takes one request from the client's bucket, then from the global one.
    ///
    /// The client's own limit is checked first so that a client flooding past its limit is
    /// refused without spending the budget everyone shares. When the global limit then
    /// refuses, the client's cell is spent all the same: governor cannot give it back, and
    /// that errs toward refusing, never toward letting more through.
    pub fn check(&self, client: &ClientId) -> Result<(), ApiError> {
        if let Some(limiter) = &self.per_client
            && let Err(not_until) = limiter.check_key(client)
        {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let message = format!(
                "rate limit reached: {} requests per minute per client, in bursts of up to {} (RATE_LIMIT_RPM, RATE_LIMIT_BURST); retry in {} s",
                self.rpm,
                self.burst,
                whole_seconds_up(wait)
            );
            return Err(refuse(
                &self.metrics,
                Limit::ClientRate,
                message,
                wait,
                Some(self.rpm),
            ));
        }
        if let Some(limiter) = &self.global
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let message = format!(
                "the gateway is at its limit of {} requests per second for all clients (GLOBAL_RATE_LIMIT_RPS); retry in {} s",
                self.global_rps,
                whole_seconds_up(wait)
            );
            return Err(refuse(
                &self.metrics,
                Limit::GlobalRate,
                message,
                wait,
                None,
            ));
        }
        Ok(())
    }

    /// Clients the per-client table holds now.
    pub fn tracked_clients(&self) -> usize {
        self.per_client.as_ref().map_or(0, RateLimiter::len)
    }

    /// Forgets clients whose bucket has filled up again and gives the memory back, so a
    /// flood of distinct clients (spoofed addresses, IPv6 ranges) cannot grow the table
    /// without bound: it holds at most the clients seen within one refill time plus
    /// [`PRUNE_EVERY`].
    pub fn prune(&self) {
        if let Some(limiter) = &self.per_client {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Prunes every `period` for as long as these limits live.
    pub fn spawn_pruner(self: &Arc<Self>, period: Duration) {
        if self.per_client.is_none() {
            return;
        }
        crate::periodic::every(self, period, Self::prune);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn ip(n: u32) -> ClientId {
        ClientId::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    fn retry_after(error: ApiError) -> u64 {
        match error {
            ApiError::RateLimited {
                retry_after_secs, ..
            } => retry_after_secs,
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds_up(Duration::from_secs(59)), 59);
    }

    #[test]
    fn a_burst_passes_and_the_next_request_waits_one_replenish_interval() {
        // 6 per minute: one cell every 10 s.
        let limits = RateLimits::new(6, 3, 0, Metrics::new(&[]));
        for _ in 0..3 {
            assert!(limits.check(&ip(1)).is_ok());
        }
        let error = limits.check(&ip(1)).unwrap_err();
        let wait = retry_after(error);
        assert!((9..=10).contains(&wait), "Retry-After {wait}");
    }

    #[test]
    fn a_refusal_names_the_settings_and_carries_the_limit() {
        let limits = RateLimits::new(60, 1, 0, Metrics::new(&[]));
        limits.check(&ip(1)).unwrap();
        let error = limits.check(&ip(1)).unwrap_err();
        assert!(error.to_string().contains("RATE_LIMIT_RPM"), "{error}");
        assert!(matches!(
            error,
            ApiError::RateLimited {
                limit: Some(60),
                remaining: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn clients_have_separate_buckets_but_share_the_global_one() {
        let limits = RateLimits::new(60, 1, 0, Metrics::new(&[]));
        assert!(limits.check(&ip(1)).is_ok());
        assert!(limits.check(&ip(1)).is_err());
        assert!(limits.check(&ip(2)).is_ok(), "another client is unaffected");

        let global = RateLimits::new(0, 0, 1, Metrics::new(&[]));
        assert!(global.check(&ip(1)).is_ok());
        let error = global.check(&ip(2)).unwrap_err();
        assert!(
            error.to_string().contains("GLOBAL_RATE_LIMIT_RPS"),
            "{error}"
        );
        assert!(matches!(error, ApiError::RateLimited { limit: None, .. }));
    }

    #[test]
    fn a_client_over_its_own_limit_does_not_spend_the_global_budget() {
        let limits = RateLimits::new(60, 1, 2, Metrics::new(&[]));
        assert!(limits.check(&ip(1)).is_ok());
        for _ in 0..10 {
            let refused = limits.check(&ip(1)).unwrap_err();
            assert!(refused.to_string().contains("per client"), "{refused}");
        }
        assert!(limits.check(&ip(2)).is_ok(), "one global cell is left");
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = RateLimits::new(0, 0, 0, Metrics::new(&[]));
        for _ in 0..1000 {
            assert!(limits.check(&ip(1)).is_ok());
        }
        assert_eq!(limits.tracked_clients(), 0);
    }

    #[test]
    fn the_total_stream_cap_is_a_503_and_the_others_are_429s() {
        use actix_web::ResponseError;
        let full = refuse(
            &Metrics::new(&[]),
            Limit::TotalStreams,
            "full".into(),
            Duration::ZERO,
            None,
        );
        let busy = refuse(
            &Metrics::new(&[]),
            Limit::ClientStreams,
            "busy".into(),
            Duration::ZERO,
            Some(2),
        );
        assert_eq!(full.status_code(), 503);
        assert_eq!(busy.status_code(), 429);
    }

    #[test]
    fn pruning_forgets_a_flood_of_clients_once_their_buckets_refill() {
        // 60,000 per minute: a bucket of one refills in 1 ms.
        let limits = RateLimits::new(60_000, 1, 0, Metrics::new(&[]));
        for n in 0..10_000 {
            limits.check(&ip(n)).unwrap();
        }
        assert_eq!(limits.tracked_clients(), 10_000);
        std::thread::sleep(Duration::from_millis(5));
        limits.prune();
        assert_eq!(limits.tracked_clients(), 0);
    }

    #[test]
    fn pruning_keeps_a_client_that_is_still_limited() {
        let limits = RateLimits::new(1, 1, 0, Metrics::new(&[]));
        limits.check(&ip(1)).unwrap();
        limits.prune();
        assert_eq!(limits.tracked_clients(), 1);
        assert!(limits.check(&ip(1)).is_err(), "still limited after a prune");
    }

    #[actix_web::test]
    async fn the_pruner_runs_on_its_timer() {
        let limits = RateLimits::new(60_000, 1, 0, Metrics::new(&[]));
        for n in 0..1000 {
            limits.check(&ip(n)).unwrap();
        }
        limits.spawn_pruner(Duration::from_millis(20));
        let emptied = tokio::time::timeout(Duration::from_secs(5), async {
            while limits.tracked_clients() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(emptied.is_ok(), "{} clients left", limits.tracked_clients());
    }
}
