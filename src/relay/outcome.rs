//! What happened to one generation: finish reason, tokens, timings. Recorded once, when the
//! relay is dropped, whichever way it ended (including a client that went away).

use std::time::Duration;

use tokio::time::Instant;

use crate::upstream::{UpstreamError, Usage};

/// How a generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The upstream's own `finish_reason` (`stop`, `length`, `tool_calls`, …).
    Upstream(String),
    /// Failed; the code is the one the client saw (`upstream_error`, `shutting_down`, …).
    Error(&'static str),
    Timeout,
    /// A DELETE, a client that went away, or no reader for the grace period.
    Cancelled(&'static str),
}

impl Finish {
    pub fn from_error(error: &UpstreamError) -> Self {
        if error.is_timeout() {
            Finish::Timeout
        } else {
            Finish::Error(error.code())
        }
    }

    /// The `finish_reason` a client sees.
    pub fn reason(&self) -> &str {
        match self {
            Finish::Upstream(reason) => reason,
            Finish::Error(_) => "error",
            Finish::Timeout => "timeout",
            Finish::Cancelled(_) => "cancelled",
        }
    }
}

pub struct Outcome {
    pub route: &'static str,
    pub model: String,
    pub request_id: String,
    pub stream_id: Option<String>,
    started: Instant,
    first_event: Option<Duration>,
    last_event: Option<Instant>,
    pub deltas: u64,
    pub usage: Option<Usage>,
    prompt_chars: usize,
    pub finish: Option<Finish>,
    /// The generation's concurrency slot, given back when the accounting ends.
    pub slot: Option<crate::limits::Permit>,
}

impl Outcome {
    pub fn new(route: &'static str, model: &str, request_id: &str, prompt_chars: usize) -> Self {
        Self {
            route,
            model: model.to_owned(),
            request_id: request_id.to_owned(),
            stream_id: None,
            started: Instant::now(),
            first_event: None,
            last_event: None,
            deltas: 0,
            usage: None,
            prompt_chars,
            finish: None,
            slot: None,
        }
    }

    /// Notes a delta the client will see.
    pub fn delta(&mut self) {
        let now = Instant::now();
        if self.first_event.is_none() {
            self.first_event = Some(now - self.started);
        }
        self.last_event = Some(now);
        self.deltas += 1;
    }

    pub fn finish(&mut self, finish: Finish) {
        self.finish.get_or_insert(finish);
    }

    /// The upstream's usage, or an estimate (about four characters a token for the prompt,
    /// a token a delta for the answer) flagged as such.
    pub fn usage_or_estimate(&self) -> (Usage, bool) {
        match self.usage {
            Some(usage) => (usage, false),
            None => {
                let prompt_tokens = (self.prompt_chars as u64).div_ceil(4);
                let usage = Usage {
                    prompt_tokens,
                    completion_tokens: self.deltas,
                    total_tokens: prompt_tokens + self.deltas,
                };
                (usage, true)
            }
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let finish = self
            .finish
            .take()
            .unwrap_or(Finish::Cancelled("client_gone"));
        let (usage, estimated) = self.usage_or_estimate();
        let ttft_ms = self.first_event.map(|d| d.as_secs_f64() * 1000.0);
        tracing::info!(
            target: "streamgate::stream",
            request_id = %self.request_id,
            stream_id = self.stream_id.as_deref().unwrap_or("-"),
            route = self.route,
            model = %self.model,
            finish_reason = finish.reason(),
            detail = match &finish { Finish::Error(code) | Finish::Cancelled(code) => *code, _ => "-" },
            ttft_ms,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            usage_estimated = estimated,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "stream ended"
        );
    }
}
