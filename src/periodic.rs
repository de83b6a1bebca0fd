//! Housekeeping on a timer that lasts exactly as long as what it tends.

use std::sync::{Arc, Weak};
use std::time::Duration;

/// Calls `work` on `target` every `period` until the last `Arc` to it is dropped. The task
/// holds only a `Weak`, so it never keeps its target alive (tests build many apps).
pub fn every<T: Send + Sync + 'static>(target: &Arc<T>, period: Duration, work: fn(&T)) {
    let target: Weak<T> = Arc::downgrade(target);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(period);
        // After a stall, one catch-up run is enough: the work looks at the present.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match target.upgrade() {
                Some(target) => work(&target),
                None => return,
            }
        }
    });
}
