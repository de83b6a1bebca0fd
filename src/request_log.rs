//! The one summary line each request gets (DESIGN.md section 7), target `streamgate::request`,
//! message `request`.
//!
//! The line is written when the request is entirely over: its response body has ended (or
//! the client left) and, when it started a generation, that generation has ended too. The
//! request-id middleware opens the summary and notes the status; a generation's
//! [`crate::relay::Outcome`] adds its model, tokens, timings and finish reason. Both hold a
//! [`RequestLog`]; whichever lets go last writes the line. So a streaming request has one
//! line with everything, and `POST /api/chat/messages` (answered `201` at once) is logged
//! when its generation ends, with the `201`.
//!
//! Never logged: a prompt or answer text, a header, a key.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::Method;
use bytes::Bytes;
use tokio::time::Instant;

use crate::metrics::{Metrics, Route};

/// The status logged and counted for a request whose client left before it was answered
/// (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// Routes that orchestrators and scrapers hit every few seconds: their successful requests
/// are logged at `debug`, so that `info` is about traffic.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// A handle on a request's summary line; cheap to clone.
#[derive(Clone)]
pub struct RequestLog(Arc<Summary>);

struct Summary {
    request_id: String,
    method: Method,
    route: Route,
    started: Instant,
    metrics: Arc<Metrics>,
    fields: Mutex<Fields>,
}

#[derive(Default)]
struct Fields {
    status: Option<u16>,
    stream_id: Option<String>,
    /// Boxed: it is filled in only when the generation ends, and the summary of every
    /// running stream is held for as long as it runs.
    generation: Option<Box<Generation>>,
}

/// What a generation adds to the line of the request that started it.
#[derive(Debug, Default)]
pub struct Generation {
    pub model: String,
    /// The `finish_reason` the client saw.
    pub finish_reason: String,
    /// The error code or cancel reason behind `error`, `timeout` or `cancelled`.
    pub detail: Option<&'static str>,
    /// From the request's arrival to the first token sent.
    pub ttft: Option<Duration>,
    /// The upstream's own time to its first event.
    pub upstream_ttft: Option<Duration>,
    /// What the gateway added to the first event.
    pub overhead: Option<Duration>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usage_estimated: bool,
}

impl RequestLog {
    pub fn new(request_id: String, method: Method, route: Route, metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(Summary {
            request_id,
            method,
            route,
            started: Instant::now(),
            metrics,
            fields: Mutex::new(Fields::default()),
        }))
    }

    pub fn request_id(&self) -> &str {
        &self.0.request_id
    }

    /// When the request arrived (its headers were read).
    pub fn started(&self) -> Instant {
        self.0.started
    }

    pub fn set_status(&self, status: u16) {
        self.0.fields().status = Some(status);
    }

    pub fn set_stream_id(&self, stream_id: &str) {
        self.0.fields().stream_id = Some(stream_id.to_owned());
    }

    pub fn set_generation(&self, generation: Generation) {
        self.0.fields().generation = Some(Box::new(generation));
    }
}

impl Summary {
    fn fields(&self) -> std::sync::MutexGuard<'_, Fields> {
        self.fields.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Milliseconds, to the microsecond.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

impl Drop for Summary {
    fn drop(&mut self) {
        let fields = self
            .fields
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let status = fields.status.unwrap_or_else(|| {
            // Never answered, so the middleware never counted it.
            self.metrics.request(self.route, CLIENT_CLOSED);
            CLIENT_CLOSED
        });
        let generation = fields.generation.as_deref();
        let quiet = status < 400 && PROBES.contains(&self.route.name);
        macro_rules! summary {
            ($level:expr) => {
                tracing::event!(
                    target: "streamgate::request",
                    $level,
                    request_id = %self.request_id,
                    method = %self.method,
                    route = self.route.name,
                    status,
                    stream_id = fields.stream_id.as_deref(),
                    model = generation.map(|g| g.model.as_str()),
                    finish_reason = generation.map(|g| g.finish_reason.as_str()),
                    detail = generation.and_then(|g| g.detail),
                    ttft_ms = generation.and_then(|g| g.ttft).map(ms),
                    upstream_ttft_ms = generation.and_then(|g| g.upstream_ttft).map(ms),
                    overhead_ms = generation.and_then(|g| g.overhead).map(ms),
                    prompt_tokens = generation.map(|g| g.prompt_tokens),
                    completion_tokens = generation.map(|g| g.completion_tokens),
                    usage_estimated = generation.map(|g| g.usage_estimated),
                    duration_ms = ms(self.started.elapsed()),
                    "request"
                )
            };
        }
        if quiet {
            summary!(tracing::Level::DEBUG);
        } else {
            summary!(tracing::Level::INFO);
        }
    }
}

/// A response body that keeps its request's summary open until the body is done, so the
/// line's duration covers the whole response, a long SSE stream included.
pub struct LoggedBody<B> {
    body: Pin<Box<B>>,
    _log: RequestLog,
}

impl<B> LoggedBody<B> {
    pub fn new(body: B, log: RequestLog) -> Self {
        Self {
            body: Box::pin(body),
            _log: log,
        }
    }
}

impl<B: MessageBody> MessageBody for LoggedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.body.as_mut().poll_next(cx)
    }
}
