//! A timer with sub-millisecond resolution for the paced mock upstream.
//!
//! tokio's timer works in whole milliseconds (its wheel's unit, and `epoll_wait`'s timeout): a
//! sleep until `t` ends on the first millisecond tick after `t`. A paced upstream built on it
//! sends every event due within a millisecond on the same tick. In a closed loop those ticks
//! gather the streams into bursts: the answers that end on one tick bring their next requests
//! at once, and their first events leave together on a later tick. A relay is then measured on
//! how many of its requests a burst pushes past the next tick, in steps of a millisecond. A
//! model's tokens come when they are ready, not on a clock's tick.
//!
//! [`Pacer`] arms one `timerfd` (an hrtimer: nanosecond resolution, no timer slack) for the
//! earliest deadline. The runtime's own event loop waits on it, and a task wakes every sleeper
//! due by then in one batch on the runtime's thread, without a wake-up from another thread.
//! Events that shared a millisecond tick now get a wake-up each when their deadlines differ:
//! the upstream spends more CPU per event, the same for every system it is measured with.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::{io::unix::AsyncFd, time::Instant};

/// Which timer paces the upstream's events.
#[derive(Clone, Debug)]
pub enum Clock {
    /// tokio's millisecond timer (what rounds before 2026-12-07 measured with).
    Tokio,
    /// A [`Pacer`].
    Fine(Arc<Pacer>),
}

impl Clock {
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        match self {
            Clock::Tokio => Sleep::Tokio(Box::pin(tokio::time::sleep_until(at))),
            Clock::Fine(p) => Sleep::Fine(p.sleep_until(at)),
        }
    }
}

/// A sleep on either clock; [`Sleep::reset`] moves its deadline.
pub enum Sleep {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Fine(FineSleep),
}

impl Sleep {
    pub fn deadline(&self) -> Instant {
        match self {
            Sleep::Tokio(s) => s.deadline(),
            Sleep::Fine(s) => s.at,
        }
    }

    pub fn reset(&mut self, at: Instant) {
        match self {
            Sleep::Tokio(s) => s.as_mut().reset(at),
            Sleep::Fine(s) => {
                s.at = at;
                s.waker = None;
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Tokio(s) => s.as_mut().poll(cx),
            Sleep::Fine(s) => Pin::new(s).poll(cx),
        }
    }
}

pub struct Pacer {
    fd: AsyncFd<OwnedFd>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("fd", &self.fd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    due: BinaryHeap<Reverse<Entry>>,
    /// The deadline the timerfd is armed for, if any.
    armed: Option<Instant>,
    seq: u64,
}

struct Entry {
    at: Instant,
    /// Breaks ties so that sleepers due at the same instant wake in the order they slept.
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl Pacer {
    /// Creates the timer and spawns the task that wakes sleepers; call inside a tokio runtime.
    pub fn start() -> io::Result<Arc<Self>> {
        // SAFETY: plain system call; a non-negative result is a new descriptor we now own.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until the `AsyncFd`
        // that owns it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        let pacer = Arc::new(Pacer {
            fd,
            state: Mutex::new(State::default()),
        });
        tokio::spawn(pacer.clone().drive());
        Ok(pacer)
    }

    pub fn sleep_until(self: &Arc<Self>, at: Instant) -> FineSleep {
        FineSleep {
            pacer: self.clone(),
            at,
            waker: None,
        }
    }

    fn register(&self, at: Instant, waker: Waker) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.seq += 1;
        let seq = st.seq;
        st.due.push(Reverse(Entry { at, seq, waker }));
        if st.armed.is_none_or(|armed| at < armed) {
            self.arm(&mut st, at);
        }
    }

    /// Arms the timerfd for `at`, relative to now (a deadline already past fires at once).
    fn arm(&self, st: &mut State, at: Instant) {
        let d = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1)); // an all-zero value would disarm the timer
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec and the descriptor is a timerfd we own.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc == 0 {
            st.armed = Some(at);
        } else {
            // Cannot happen with a valid descriptor and value; a stuck pacer would show as
            // requests that never finish, so say why.
            eprintln!("pace: timerfd_settime: {}", io::Error::last_os_error());
        }
    }

    async fn drive(self: Arc<Self>) {
        let mut wake = Vec::new();
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into an 8-byte buffer from our own descriptor.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            // A timerfd is readable once per expiry: after a read (or EAGAIN, when the
            // readiness was stale) it stays quiet until it fires again.
            guard.clear_ready();
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                eprintln!("pace: reading timerfd: {}", io::Error::last_os_error());
            }
            let now = Instant::now();
            {
                let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                while st.due.peek().is_some_and(|e| e.0.at <= now) {
                    if let Some(Reverse(e)) = st.due.pop() {
                        wake.push(e.waker);
                    }
                }
                st.armed = None;
                if let Some(next) = st.due.peek().map(|e| e.0.at) {
                    self.arm(&mut st, next);
                }
            }
            // Woken outside the lock: a sleeper polled at once may register again.
            for w in wake.drain(..) {
                w.wake();
            }
        }
    }
}

/// A sleep until `at` on a [`Pacer`]. Dropped or reset before its deadline, it leaves its entry
/// (and the waker, which keeps its task's allocation) in the pacer until that deadline passes:
/// removing it from the heap would cost every sleep more than the rare early drop saves.
pub struct FineSleep {
    pacer: Arc<Pacer>,
    at: Instant,
    /// The waker registered for `at`; `None` until the first poll and after a reset.
    waker: Option<Waker>,
}

impl Future for FineSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.at {
            return Poll::Ready(());
        }
        // An entry left behind by a reset or a new waker only causes one spurious wake.
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            this.pacer.register(this.at, cx.waker().clone());
            this.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleepers registered out of order end in deadline order, never before their deadline.
    #[tokio::test(flavor = "current_thread")]
    async fn wakes_in_order_and_never_early() {
        let pacer = Pacer::start().expect("timerfd");
        let base = Instant::now() + Duration::from_millis(5);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // 40 deadlines 150 µs apart (several inside one millisecond), registered shuffled.
        for i in [
            7u32, 3, 39, 0, 21, 12, 30, 1, 18, 25, 9, 35, 5, 14, 28, 2, 33, 11, 38, 16,
        ]
        .into_iter()
        .chain([
            4, 6, 8, 10, 13, 15, 17, 19, 20, 22, 23, 24, 26, 27, 29, 31, 32, 34, 36, 37,
        ]) {
            let at = base + Duration::from_micros(150) * i;
            let s = pacer.sleep_until(at);
            let tx = tx.clone();
            tokio::spawn(async move {
                s.await;
                let _ = tx.send((i, at, Instant::now()));
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some((i, at, woke)) = rx.recv().await {
            assert!(woke >= at, "sleeper {i} woke {:?} early", at - woke);
            order.push(i);
        }
        assert_eq!(order, (0..40).collect::<Vec<_>>());
    }

    /// A reset to an earlier deadline re-arms the timer instead of waiting for the old one.
    #[tokio::test(flavor = "current_thread")]
    async fn reset_to_earlier_deadline_rearms() {
        let pacer = Pacer::start().expect("timerfd");
        let mut s = Clock::Fine(pacer).sleep_until(Instant::now() + Duration::from_secs(3600));
        // Registers the hour-long deadline.
        assert!(futures_poll_once(&mut s).await.is_pending());
        let soon = Instant::now() + Duration::from_micros(300);
        s.reset(soon);
        tokio::time::timeout(Duration::from_secs(60), &mut s)
            .await
            .expect("woken at the new deadline, not the old one");
        assert!(Instant::now() >= soon);
    }

    async fn futures_poll_once(s: &mut Sleep) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *s).poll(cx))).await
    }
}
