//! streamgate patch: the graceful-shutdown signal, polled only when it has woken the connection.
//!
//! The h1 dispatcher used to poll the signal (actix-server's `watch::Receiver::changed`) on
//! every poll of a connection. Each of those polls took the watch's waiter lock and compared
//! wakers, ~160 instructions, and a connection streaming a response is polled once per event.
//! Here the signal is polled with a waker of its own, which marks it as fired before waking the
//! connection's task; the dispatcher polls it again only when that mark is set (or when the
//! connection's task changed, so the wake-up reaches the right one).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Wake, Waker},
};

use crate::config::GracefulShutdownFuture;

pub(crate) struct ShutdownWatch {
    signal: GracefulShutdownFuture,
    flag: Arc<Flag>,
    /// The task waker last handed to `flag`; `None` until the first poll, which polls `signal`
    /// so that it registers its (flag) waker with the sender.
    registered: Option<Waker>,
}

/// The waker `signal` is polled with. The sender may wake it from another thread.
struct Flag {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Set before the task is woken, so the poll that follows sees it.
        self.fired.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl ShutdownWatch {
    pub(crate) fn new(signal: GracefulShutdownFuture) -> Self {
        Self {
            signal,
            flag: Arc::new(Flag {
                fired: AtomicBool::new(false),
                task: Mutex::new(None),
            }),
            registered: None,
        }
    }

    /// True once the server has begun a graceful shutdown.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let first = self.registered.is_none();
        if !self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            *self
                .flag
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            self.registered = Some(cx.waker().clone());
        }

        if !first && !self.flag.fired.swap(false, Ordering::Acquire) {
            return false;
        }

        let waker = Waker::from(Arc::clone(&self.flag));
        self.signal
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::{poll_fn, Future as _},
        sync::atomic::AtomicUsize,
    };

    use tokio::sync::watch;

    use super::*;

    /// Counts the polls of the signal future, the way a test sees what the dispatcher skips.
    fn watch_signal(rx: watch::Receiver<()>, polls: Arc<AtomicUsize>) -> ShutdownWatch {
        let mut rx = rx;
        let mut changed = Box::pin(async move { rx.changed().await.ok() });
        ShutdownWatch::new(Box::pin(poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            changed.as_mut().poll(cx).map(|_| ())
        })))
    }

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn polls_the_signal_only_after_it_woke_the_task() {
        let (tx, rx) = watch::channel(());
        let polls = Arc::new(AtomicUsize::new(0));
        let mut watch = watch_signal(rx, Arc::clone(&polls));
        let task = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&waker);

        assert!(!watch.poll_fired(&mut cx));
        assert!(!watch.poll_fired(&mut cx));
        assert!(!watch.poll_fired(&mut cx));
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled again without a wake-up"
        );

        tx.send(()).unwrap();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "the task was not woken");
        assert!(watch.poll_fired(&mut cx));
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_new_task_gets_the_wake_up() {
        let (tx, rx) = watch::channel(());
        let polls = Arc::new(AtomicUsize::new(0));
        let mut watch = watch_signal(rx, polls);
        let first = Arc::new(CountWakes(AtomicUsize::new(0)));
        let second = Arc::new(CountWakes(AtomicUsize::new(0)));

        let waker = Waker::from(Arc::clone(&first));
        assert!(!watch.poll_fired(&mut Context::from_waker(&waker)));
        let waker = Waker::from(Arc::clone(&second));
        assert!(!watch.poll_fired(&mut Context::from_waker(&waker)));

        tx.send(()).unwrap();
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
        assert!(watch.poll_fired(&mut Context::from_waker(&waker)));
    }

    #[test]
    fn a_signal_already_sent_is_seen_at_the_first_poll() {
        let (tx, rx) = watch::channel(());
        tx.send(()).unwrap();
        let mut watch = watch_signal(rx, Arc::new(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::new(CountWakes(AtomicUsize::new(0))));
        assert!(watch.poll_fired(&mut Context::from_waker(&waker)));
    }
}
