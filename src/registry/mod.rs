//! The stream registry: every browser-API generation runs apart from any one connection and
//! is kept, event by event, until `STREAM_TTL_SECS` after it ends, so readers can resume
//! with `Last-Event-ID`, fan out across tabs, or cancel it by id.

mod entry;
mod generation;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use entry::{Entry, Subscription};
pub use generation::run as run_generation;

use crate::error::ApiError;

/// Freed stream memory worth returning to the operating system in one sweep.
const RELEASE_AFTER_BYTES: usize = 1024 * 1024;

pub struct Registry {
    streams: Mutex<HashMap<String, Arc<Entry>>>,
    ttl: Duration,
    grace: Duration,
}

impl Registry {
    pub fn new(ttl: Duration, grace: Duration) -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::new(HashMap::new()),
            ttl,
            grace,
        })
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new stream with a fresh id: 128 bits from the OS generator, as 32 hex characters.
    pub fn create(&self) -> Result<Arc<Entry>, ApiError> {
        let id = crate::id::random_hex(16).map_err(|e| {
            tracing::error!(error = %e, "no randomness for a stream id");
            ApiError::Unavailable("the gateway cannot create stream ids right now".into())
        })?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = Arc::new(Entry::new(id.clone(), created));
        self.streams().insert(id, Arc::clone(&entry));
        Ok(entry)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.streams().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.streams().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Frees expired streams and cancels generations nobody has read for the grace period.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut abandoned = Vec::new();
        let mut expired = Vec::new();
        self.streams().retain(|_, entry| {
            if entry.abandoned(now, self.grace) {
                abandoned.push(Arc::clone(entry));
            }
            let keep = !entry.expired(now, self.ttl);
            if !keep {
                expired.push(Arc::clone(entry));
            }
            keep
        });
        for entry in abandoned {
            entry.cancel("no_reader");
        }
        // Dropped outside the registry lock; then, if that freed a lot, hand it back.
        let freed: usize = expired.iter().map(|e| e.bytes_held()).sum();
        drop(expired);
        if freed >= RELEASE_AFTER_BYTES {
            crate::memory::release_free_memory();
        }
    }

    /// Sweeps on a timer for as long as the registry lives.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let period =
            (self.ttl.min(self.grace) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        crate::periodic::every(self, period, Self::sweep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_100_000_creations() {
        let registry = Registry::new(Duration::from_secs(1), Duration::from_secs(1));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let entry = registry.create().unwrap();
            assert_eq!(entry.id.len(), 32);
            assert!(entry.id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(seen.insert(entry.id.clone()), "repeated id {}", entry.id);
        }
        assert_eq!(registry.len(), 100_000);
    }
}
