//! One browser stream: its events kept in order, encoded once, in one growing buffer, and
//! the readers following it. Readers hold only a cursor, so a slow reader costs the others
//! nothing and buffers nothing of its own; TCP backpressure stays with its connection.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;
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
    changed: watch::Sender<()>,
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
            changed: watch::Sender::new(()),
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
        let wrote = {
            let mut log = self.log();
            let id = log.ends.len() as u64 + 1;
            let wrote = write(&mut log.buf, id);
            if wrote {
                let end = u32::try_from(log.buf.len()).unwrap_or(u32::MAX);
                log.ends.push(end);
            }
            wrote
        };
        if wrote {
            self.changed.send_replace(());
        }
    }

    /// Marks the stream complete; its memory is trimmed to what it holds.
    pub fn finish(&self) {
        {
            let mut log = self.log();
            log.finished_at = Some(Instant::now());
            log.buf.shrink_to_fit();
            log.ends.shrink_to_fit();
        }
        self.changed.send_replace(());
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
        let mut changes = self.changed.subscribe();
        while !self.is_finished() {
            // The sender lives in `self`, so this cannot fail while we hold `&self`.
            let _ = changes.changed().await;
        }
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
        drop(log);
        Subscription {
            entry: Arc::clone(self),
            next,
            changes: self.changed.subscribe(),
        }
    }
}

pub struct Subscription {
    entry: Arc<Entry>,
    /// Index of the next event to hand out.
    next: usize,
    changes: watch::Receiver<()>,
}

impl Subscription {
    /// Every event not yet handed out, as one batch; waits for the next one when there is
    /// none, and ends (`None`) after the stream finished and all of it was read.
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            // Marked seen before looking, so an append after the look still wakes us.
            self.changes.borrow_and_update();
            {
                let log = self.entry.log();
                if self.next < log.ends.len() {
                    let start = self.next.checked_sub(1).map_or(0, |i| log.ends[i] as usize);
                    // Whole events up to MAX_BATCH (at least one), so a reader catching up
                    // never copies more than that at a time.
                    let fits = log.ends[self.next..]
                        .partition_point(|&end| end as usize - start <= MAX_BATCH);
                    self.next += fits.max(1);
                    let end = log.ends[self.next - 1] as usize;
                    return Some(Bytes::copy_from_slice(&log.buf[start..end]));
                }
                if log.finished_at.is_some() {
                    return None;
                }
            }
            // The sender lives in the entry this subscription holds, so this never errs.
            let _ = self.changes.changed().await;
        }
    }

    /// Waits until there is an event to read or the stream has finished.
    pub async fn ready(&mut self) {
        loop {
            self.changes.borrow_and_update();
            {
                let log = self.entry.log();
                if self.next < log.ends.len() || log.finished_at.is_some() {
                    return;
                }
            }
            let _ = self.changes.changed().await;
        }
    }

    pub fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut log = self.entry.log();
        log.readers = log.readers.saturating_sub(1);
        if log.readers == 0 {
            log.unread_since = Some(Instant::now());
        }
    }
}
