//! Waiting on a [`CancellationToken`] for as long as a stream runs.
//!
//! A stream checks for cancellation every time it is polled, once per event. Polling the
//! token's waiter each time takes the waiter list's lock and compares wakers again, ~280
//! instructions a poll, ~9,000 per answer of 32 events (`DELAY_MS=2 bench/callgrind.sh`).
//! [`Cancelled`] registers its waker once, re-registers only when polled by another task, and
//! otherwise only asks the token whether it fired (`is_cancelled`: one uncontended lock, ~40
//! instructions).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pin_project_lite::pin_project! {
    /// Resolves once the token is cancelled.
    pub struct Cancelled {
        token: CancellationToken,
        #[pin]
        waiter: WaitForCancellationFutureOwned,
        // The waker the waiter holds; `None` until the first poll.
        registered: Option<Waker>,
    }
}

impl Cancelled {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            waiter: token.clone().cancelled_owned(),
            token,
            registered: None,
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.token.is_cancelled() {
            return Poll::Ready(());
        }
        // The waiter stays registered until the token fires, so the same task need not
        // register again: a cancellation wakes it, and `is_cancelled` answers the next poll.
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        if this.waiter.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        *this.registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_count::WakeCount;

    #[test]
    fn wakes_the_task_that_polled_last_then_resolves() {
        let token = CancellationToken::new();
        let mut fut = std::pin::pin!(Cancelled::new(token.clone()));
        let (first, w1) = WakeCount::waker();
        let (second, w2) = WakeCount::waker();
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&w1))
                .is_pending()
        );
        // Polled again by the same task: still pending, nothing re-registered or woken.
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&w1))
                .is_pending()
        );
        // Moved to another task: the registration follows it.
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&w2))
                .is_pending()
        );
        token.cancel();
        assert_eq!(first.get(), 0, "the old task is not woken");
        assert_eq!(second.get(), 1, "the last task is woken");
        assert!(fut.as_mut().poll(&mut Context::from_waker(&w2)).is_ready());
    }

    #[test]
    fn ready_at_once_when_cancelled_before_the_first_poll() {
        let token = CancellationToken::new();
        token.cancel();
        let mut fut = std::pin::pin!(Cancelled::new(token));
        let (_, w) = WakeCount::waker();
        assert!(fut.as_mut().poll(&mut Context::from_waker(&w)).is_ready());
    }
}
