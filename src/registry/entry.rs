//! One browser stream: its events kept in order, encoded once, in one growing buffer, and
//! the readers following it. Readers hold only a cursor, so a slow reader costs the others
//! nothing and buffers nothing of its own; TCP backpressure stays with its connection.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::upstream::UpstreamError;

/// The most a reader takes from the log in one go.
const MAX_BATCH: usize = 64 * 1024;

pub struct Entry {
    pub id: String,
    /// Unix seconds when the generation started.
    pub created_unix: u64,
    log: Mutex<Log>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Log {
    /// Every event's SSE bytes, back to back.
    buf: Vec<u8>,
    /// `ends[i]` is where event `i + 1` ends in `buf`; `u32` because a log is capped at
    /// 16 MiB, and this halves what a stream holds per event besides its bytes.
    ends: Vec<u32>,
    finished_at: Option<Instant>,
    readers: u32,
    /// Since when nobody has been reading (`None` while somebody is).
    unread_since: Option<Instant>,
    /// The generation failed before its first event (the POST can still answer 502/504).
    opening_error: Option<UpstreamError>,
    cancel_reason: Option<&'static str>,
    /// The tasks waiting for the next event or the end, each under its waiter id. They are
    /// woken, and the list emptied, under the lock that appends: a waiter registers under the
    /// same lock it looked at the log with, so no append can slip between the look and the
    /// registration. (A `watch` channel did this before, at ~470 instructions per event for
    /// its own lock and waiter list; the log's lock is taken for each event anyway.)
    waiters: Vec<(u64, Waker)>,
    next_waiter: u64,
}

impl Log {
    fn new_waiter(&mut self) -> u64 {
        self.next_waiter += 1;
        self.next_waiter
    }

    /// Registers waiter `id`'s task, once: a task polled again before a change is not added
    /// twice.
    fn wait(&mut self, id: u64, waker: &Waker) {
        match self.waiters.iter_mut().find(|(w, _)| *w == id) {
            Some((_, registered)) => {
                if !registered.will_wake(waker) {
                    *registered = waker.clone();
                }
            }
            None => self.waiters.push((id, waker.clone())),
        }
    }

    fn forget(&mut self, id: u64) {
        self.waiters.retain(|(w, _)| *w != id);
    }

    /// Wakes every waiter; the list keeps its capacity for the next registrations. This runs
    /// under the log's lock, which is safe because a waker only schedules its task: it never
    /// polls it, so it cannot come back for the lock.
    fn wake_all(&mut self) {
        for (_, waker) in self.waiters.drain(..) {
            waker.wake();
        }
    }
}

impl Entry {
    pub fn new(id: String, created_unix: u64) -> Self {
        Self {
            id,
            created_unix,
            log: Mutex::new(Log {
                unread_since: Some(Instant::now()),
                ..Log::default()
            }),
            cancel: CancellationToken::new(),
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        // A panic elsewhere cannot leave the log half-written (appends are single pushes),
        // so a poisoned lock is still safe to use.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one event: `write` gets the buffer and the event's id and returns whether it
    /// wrote anything. Readers are woken only when it did.
    pub fn append(&self, write: impl FnOnce(&mut Vec<u8>, u64) -> bool) {
        let mut log = self.log();
        let id = log.ends.len() as u64 + 1;
        if write(&mut log.buf, id) {
            let end = u32::try_from(log.buf.len()).unwrap_or(u32::MAX);
            log.ends.push(end);
            log.wake_all();
        }
    }

    /// Marks the stream complete; its memory is trimmed to what it holds.
    pub fn finish(&self) {
        let mut log = self.log();
        log.finished_at = Some(Instant::now());
        log.buf.shrink_to_fit();
        log.ends.shrink_to_fit();
        log.wake_all();
    }

    pub fn bytes_held(&self) -> usize {
        self.log().buf.len()
    }

    pub fn event_count(&self) -> u64 {
        self.log().ends.len() as u64
    }

    pub fn is_finished(&self) -> bool {
        self.log().finished_at.is_some()
    }

    /// Resolves once the generation has ended (without counting as a reader).
    pub async fn wait_finished(&self) {
        let waiter = Forget(self, self.log().new_waiter());
        poll_fn(|cx| {
            let mut log = self.log();
            if log.finished_at.is_some() {
                return Poll::Ready(());
            }
            log.wait(waiter.1, cx.waker());
            Poll::Pending
        })
        .await;
    }

    pub fn set_opening_error(&self, error: UpstreamError) {
        self.log().opening_error = Some(error);
    }

    pub fn opening_error(&self) -> Option<UpstreamError> {
        self.log().opening_error.clone()
    }

    /// Asks the generation to stop; `reason` is what logs and metrics will say.
    pub fn cancel(&self, reason: &'static str) {
        self.log().cancel_reason.get_or_insert(reason);
        self.cancel.cancel();
    }

    pub fn cancel_reason(&self) -> &'static str {
        self.log().cancel_reason.unwrap_or("cancelled")
    }

    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Finished before `now - ttl`: its memory can go.
    pub(super) fn expired(&self, now: Instant, ttl: std::time::Duration) -> bool {
        self.log().finished_at.is_some_and(|at| now >= at + ttl)
    }

    /// Still generating with nobody reading since before `now - grace`.
    pub(super) fn abandoned(&self, now: Instant, grace: std::time::Duration) -> bool {
        let log = self.log();
        log.finished_at.is_none() && log.unread_since.is_some_and(|since| now >= since + grace)
    }

    /// A reader of the events after `after` (0 reads from the start).
    pub fn subscribe(self: &Arc<Self>, after: u64) -> Subscription {
        let mut log = self.log();
        log.readers += 1;
        log.unread_since = None;
        let next = (after as usize).min(log.ends.len());
        let waiter = log.new_waiter();
        drop(log);
        Subscription {
            entry: Arc::clone(self),
            next,
            waiter,
        }
    }
}

/// Takes a waiter that stopped waiting (its future was dropped) off the list.
struct Forget<'a>(&'a Entry, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.log().forget(self.1);
    }
}

/// A reader of one stream: a stream of batches of whole events, each batch everything not
/// yet handed out (up to `MAX_BATCH`); it ends after the stream finished and all of it was read.
pub struct Subscription {
    entry: Arc<Entry>,
    /// Index of the next event to hand out.
    next: usize,
    waiter: u64,
}

impl Subscription {
    /// Waits until there is an event to read or the stream has finished.
    pub async fn ready(&mut self) {
        poll_fn(|cx| {
            let mut log = self.entry.log();
            if self.next < log.ends.len() || log.finished_at.is_some() {
                return Poll::Ready(());
            }
            log.wait(self.waiter, cx.waker());
            Poll::Pending
        })
        .await;
    }

    pub fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let mut log = this.entry.log();
        if this.next < log.ends.len() {
            let start = this.next.checked_sub(1).map_or(0, |i| log.ends[i] as usize);
            // Whole events up to MAX_BATCH (at least one), so a reader catching up never
            // copies more than that at a time.
            let fits =
                log.ends[this.next..].partition_point(|&end| end as usize - start <= MAX_BATCH);
            this.next += fits.max(1);
            let end = log.ends[this.next - 1] as usize;
            return Poll::Ready(Some(Bytes::copy_from_slice(&log.buf[start..end])));
        }
        if log.finished_at.is_some() {
            return Poll::Ready(None);
        }
        log.wait(this.waiter, cx.waker());
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut log = self.entry.log();
        log.forget(self.waiter);
        log.readers = log.readers.saturating_sub(1);
        if log.readers == 0 {
            log.unread_since = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_count::WakeCount;

    fn event(text: &'static str) -> impl FnOnce(&mut Vec<u8>, u64) -> bool {
        move |buf, _| {
            buf.extend_from_slice(text.as_bytes());
            true
        }
    }

    fn waiters(entry: &Entry) -> usize {
        entry.log().waiters.len()
    }

    #[test]
    fn a_waiting_reader_is_registered_once_and_woken_by_the_next_event() {
        let entry = Arc::new(Entry::new("s".into(), 0));
        let mut reader = entry.subscribe(0);
        let (count, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut reader).poll_next(&mut cx).is_pending());
        assert!(Pin::new(&mut reader).poll_next(&mut cx).is_pending());
        assert_eq!(waiters(&entry), 1);

        entry.append(event("a"));
        assert_eq!(count.get(), 1);
        assert_eq!(waiters(&entry), 0, "woken waiters are taken off the list");
        let got = Pin::new(&mut reader).poll_next(&mut cx);
        assert_eq!(got, Poll::Ready(Some(Bytes::from_static(b"a"))));

        // Not waiting: an append does not wake it.
        entry.append(event("b"));
        assert_eq!(count.get(), 1);
        assert!(Pin::new(&mut reader).poll_next(&mut cx).is_ready());
    }

    #[test]
    fn an_append_that_writes_nothing_wakes_nobody() {
        let entry = Arc::new(Entry::new("s".into(), 0));
        let mut reader = entry.subscribe(0);
        let (count, waker) = WakeCount::waker();
        assert!(
            Pin::new(&mut reader)
                .poll_next(&mut Context::from_waker(&waker))
                .is_pending()
        );
        entry.append(|_, _| false);
        assert_eq!(count.get(), 0);
        assert_eq!(waiters(&entry), 1);
    }

    #[test]
    fn finish_wakes_readers_which_then_end() {
        let entry = Arc::new(Entry::new("s".into(), 0));
        let mut reader = entry.subscribe(0);
        let (count, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut reader).poll_next(&mut cx).is_pending());
        entry.finish();
        assert_eq!(count.get(), 1);
        assert_eq!(Pin::new(&mut reader).poll_next(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn readers_and_waits_that_go_away_leave_no_waker_behind() {
        let entry = Arc::new(Entry::new("s".into(), 0));
        let (_, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);

        let mut reader = entry.subscribe(0);
        assert!(Pin::new(&mut reader).poll_next(&mut cx).is_pending());
        let mut ready = Box::pin(reader.ready());
        assert!(ready.as_mut().poll(&mut cx).is_pending());
        drop(ready);
        let mut finished = Box::pin(entry.wait_finished());
        assert!(finished.as_mut().poll(&mut cx).is_pending());
        assert_eq!(waiters(&entry), 2);

        drop(finished);
        assert_eq!(waiters(&entry), 1);
        drop(reader);
        assert_eq!(waiters(&entry), 0);
    }
}
