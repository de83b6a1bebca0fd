//! Idle upstream connections of one worker, kept for the next request.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::conn::Connection;

/// An idle connection older than this is closed rather than reused: upstreams and the
/// proxies in front of them close idle connections after a while, and a request sent on one
/// they just closed fails. reqwest's default, kept so both paths behave alike.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per worker at most; more than the streams that ended together
/// recently would only hold sockets open on the upstream.
const MAX_IDLE: usize = 1024;

#[derive(Default)]
pub struct Pool {
    /// Oldest first; taken from the back, so the warmest connection serves next and the cold
    /// ones age out at the front.
    idle: Mutex<VecDeque<(Instant, Connection)>>,
}

impl Pool {
    /// The most recently used idle connection that is still open.
    pub fn take(&self) -> Option<Connection> {
        loop {
            let (since, mut connection) = self.lock().pop_back()?;
            if since.elapsed() < IDLE_TIMEOUT && connection.is_reusable() {
                return Some(connection);
            }
        }
    }

    /// Keeps a connection whose last answer was read to its end, if it can serve another.
    pub fn put(&self, mut connection: Connection) {
        if !connection.is_reusable() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        while idle
            .front()
            .is_some_and(|(since, _)| now.duration_since(*since) >= IDLE_TIMEOUT)
            || idle.len() >= MAX_IDLE
        {
            idle.pop_front();
        }
        // The oldest is the likeliest to have been closed by the upstream (uvicorn, say, after
        // 5 s): looked at once per return, so that closed sockets do not wait out the timeout.
        if idle
            .front_mut()
            .is_some_and(|(_, oldest)| !oldest.is_reusable())
        {
            idle.pop_front();
        }
        idle.push_back((now, connection));
    }

    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Connection)>> {
        // A panic while holding the lock cannot leave the queue inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
