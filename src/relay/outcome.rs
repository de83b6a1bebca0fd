//! What happened to one generation: finish reason, tokens, timings. Timings go to the
//! metrics as they happen; the rest is recorded once, when the relay is dropped, whichever
//! way it ended (including a client that went away), into the metrics and into the summary
//! line of the request that started the generation.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::Permit;
use crate::metrics::{Histogram, Metrics};
use crate::request::ChatRequest;
use crate::request_log::{Generation, RequestLog};
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
    pub model: String,
    pub stream_id: Option<String>,
    /// The request's arrival: every time below is measured from it.
    started: Instant,
    upstream_ttft: Option<Duration>,
    first_token: Option<Duration>,
    overhead: Option<Duration>,
    last_token: Option<Instant>,
    pub deltas: u64,
    pub usage: Option<Usage>,
    prompt_chars: usize,
    pub finish: Option<Finish>,
    metrics: Arc<Metrics>,
    /// This model's histogram, looked up once here rather than per event.
    ttft_histogram: Arc<Histogram>,
    /// The generation's concurrency slot, given back when the accounting ends.
    _slot: Permit,
    /// Declared last so it is dropped last: the summary line is written after everything
    /// above was recorded into it.
    log: RequestLog,
}

impl Outcome {
    pub fn new(
        log: RequestLog,
        metrics: &Arc<Metrics>,
        request: &ChatRequest,
        slot: Permit,
    ) -> Self {
        Self {
            model: request.model.clone(),
            stream_id: None,
            started: log.started(),
            upstream_ttft: None,
            first_token: None,
            overhead: None,
            last_token: None,
            deltas: 0,
            usage: None,
            prompt_chars: request.prompt_chars,
            finish: None,
            metrics: Arc::clone(metrics),
            ttft_histogram: metrics.ttft_for(&request.model),
            _slot: slot,
            log,
        }
    }

    /// The id the upstream request carries in `X-Request-Id`.
    pub fn request_id(&self) -> &str {
        self.log.request_id()
    }

    /// The upstream's first event arrived after `upstream_ttft`.
    pub fn opened(&mut self, upstream_ttft: Duration) {
        self.upstream_ttft = Some(upstream_ttft);
    }

    /// Notes that the gateway has handed an upstream event on to the client. For the first,
    /// the time since the request arrived less the upstream's own time to that event is the
    /// gateway's overhead.
    pub fn relayed(&mut self) {
        if self.overhead.is_none()
            && let Some(upstream) = self.upstream_ttft
        {
            let overhead = self.started.elapsed().saturating_sub(upstream);
            self.overhead = Some(overhead);
            self.metrics.overhead(overhead);
        }
    }

    /// Notes a token (a content, reasoning or tool-call delta) the client will see.
    pub fn delta(&mut self) {
        let now = Instant::now();
        match self.last_token {
            None => {
                let ttft = now - self.started;
                self.first_token = Some(ttft);
                self.ttft_histogram.observe(ttft);
            }
            Some(last) => self.metrics.inter_token(now - last),
        }
        self.last_token = Some(now);
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
        match &finish {
            Finish::Cancelled(reason) | Finish::Error(reason @ "shutting_down") => {
                self.metrics.cancelled(reason);
            }
            _ => {}
        }
        let (usage, estimated) = self.usage_or_estimate();
        // A request the upstream refused, or one abandoned before its first event, used no
        // tokens worth counting: the estimate would only be a guess at the prompt.
        if self.usage.is_some() || self.upstream_ttft.is_some() {
            self.metrics
                .tokens(usage.prompt_tokens, usage.completion_tokens);
        }
        if let Some(stream_id) = &self.stream_id {
            self.log.set_stream_id(stream_id);
        }
        self.log.set_generation(Generation {
            model: std::mem::take(&mut self.model),
            finish_reason: finish.reason().to_owned(),
            detail: match finish {
                Finish::Error(code) | Finish::Cancelled(code) => Some(code),
                Finish::Timeout => Some("upstream_timeout"),
                Finish::Upstream(_) => None,
            },
            ttft: self.first_token,
            upstream_ttft: self.upstream_ttft,
            overhead: self.overhead,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            usage_estimated: estimated,
        });
    }
}
