//! What handlers share. Built once per worker: the parts behind `Arc` are common to all
//! workers; the backend (and its upstream connection pool) is the worker's own, so a
//! stream's sockets are all driven from one thread.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::lifecycle::Lifecycle;
use crate::limits::StreamLimits;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::registry::Registry;
use crate::settings::Settings;

#[derive(Clone)]
pub struct Shared {
    pub settings: Arc<Settings>,
    pub registry: Arc<Registry>,
    pub limits: Arc<StreamLimits>,
    pub rate_limits: Arc<RateLimits>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
}

pub struct AppState {
    pub shared: Shared,
    pub backend: Backend,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl AppState {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.settings.heartbeat_secs.get())
    }
}
