//! Caps on concurrent generations, in total and per client. A permit is held for as long as
//! a generation runs and gives its slot back when dropped, however the generation ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::ApiError;
use crate::memory::ReleaseAfterFall;
use crate::metrics::Metrics;
use crate::ratelimit::{Limit, refuse};

/// When a stream will end is unknown; a second is a polite pace for a client to try again.
const RETRY_WHEN_BUSY: Duration = Duration::from_secs(1);
/// Closed streams worth a memory release (~12 KiB of connection state each: ~3 MiB).
const RELEASE_AFTER_STREAMS: u32 = 256;
/// How often the count of running streams is looked at for a fall.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Who a request is, for limits: the gateway key it presented, else its IP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// The index of the key in `GATEWAY_API_KEYS`: never the key itself.
    Key(usize),
    Ip(std::net::IpAddr),
    Unknown,
}

pub struct StreamLimits {
    active: AtomicU32,
    max_total: u32,
    per_client: Mutex<HashMap<ClientId, u32>>,
    max_per_client: u32,
    metrics: Arc<Metrics>,
    memory: ReleaseAfterFall,
}

pub struct Permit {
    limits: Arc<StreamLimits>,
    client: ClientId,
}

impl StreamLimits {
    pub fn new(max_total: u32, max_per_client: u32, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicU32::new(0),
            max_total,
            per_client: Mutex::new(HashMap::new()),
            max_per_client,
            metrics,
            memory: ReleaseAfterFall::new(RELEASE_AFTER_STREAMS),
        })
    }

    /// Hands freed memory back to the system after many streams ended, on a timer for as long
    /// as the limits live: without it the process stays at its peak size after a burst.
    pub fn spawn_memory_watch(self: &Arc<Self>) {
        crate::periodic::every(self, WATCH_EVERY, |limits| {
            if limits.memory.should_release(limits.active()) {
                crate::memory::release_free_memory();
            }
        });
    }

    /// Generations running now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn acquire(self: &Arc<Self>, client: &ClientId) -> Result<Permit, ApiError> {
        let reserved = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        let Ok(before) = reserved else {
            return Err(refuse(
                &self.metrics,
                Limit::TotalStreams,
                format!(
                    "the gateway is at its limit of {} concurrent streams (MAX_STREAMS); try again shortly",
                    self.max_total
                ),
                RETRY_WHEN_BUSY,
                None,
            ));
        };
        self.memory.rose_to(before + 1);
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = per_client.entry(client.clone()).or_insert(0);
        if *count >= self.max_per_client {
            drop(per_client);
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(refuse(
                &self.metrics,
                Limit::ClientStreams,
                format!(
                    "too many concurrent streams for this client (limit {}, MAX_STREAMS_PER_CLIENT); wait for one to end",
                    self.max_per_client
                ),
                RETRY_WHEN_BUSY,
                Some(self.max_per_client),
            ));
        }
        *count += 1;
        Ok(Permit {
            limits: Arc::clone(self),
            client: client.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per_client = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.client);
            }
        }
        drop(per_client);
        self.limits.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_comes_back_when_its_permit_drops() {
        let limits = StreamLimits::new(2, 1, Metrics::new(&[]));
        let a = ClientId::Key(0);
        let b = ClientId::Key(1);
        let first = limits.acquire(&a).unwrap();
        assert!(limits.acquire(&a).is_err(), "per-client cap");
        let second = limits.acquire(&b).unwrap();
        assert!(matches!(
            limits.acquire(&ClientId::Unknown),
            Err(ApiError::Unavailable(_))
        ));
        drop(first);
        assert!(limits.acquire(&a).is_ok());
        drop(second);
        assert_eq!(limits.active(), 0);
    }
}
