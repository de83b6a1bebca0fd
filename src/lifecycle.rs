//! Start-to-stop state shared by every worker: whether the gateway is shutting down, and the
//! signal that ends the streams still running when the shutdown grace period is over.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

#[derive(Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    cut: CancellationToken,
}

impl Lifecycle {
    /// Stop taking new generations; running ones go on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// End every running stream now (with `error` `shutting_down`, then `stop`).
    pub fn cut_streams(&self) {
        self.cut.cancel();
    }

    /// Fires when running streams must end.
    pub fn cut_token(&self) -> CancellationToken {
        self.cut.clone()
    }

    pub fn admit(&self) -> Result<(), ApiError> {
        if self.is_draining() {
            Err(ApiError::Unavailable(
                "the gateway is shutting down and takes no new generations".into(),
            ))
        } else {
            Ok(())
        }
    }
}
