//! Where answers come from: the built-in mock model or an upstream, behind one interface
//! that applies the first-token and idle timeouts the same way to both.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;
use crate::mock::MockModel;
use crate::request::ChatRequest;
use crate::settings::Settings;
use crate::upstream::{Chunk, ClientBuildError, UpstreamClient, UpstreamError, chunks};

/// A generation's chunks after the first event arrived; it ends with `Err` on failure.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, UpstreamError>> + Send>>;

/// A generation whose first event has arrived.
pub struct Opened {
    /// Its chunks, the first one included.
    pub chunks: ChunkStream,
    /// The upstream's own time to its first event (connecting and retries included), from
    /// the moment the gateway started the upstream request.
    pub upstream_ttft: Duration,
}

/// Cheap to clone (one reference count): a streaming request keeps a clone for as long as it
/// runs, so a deep copy (URLs, key, client handles) would be memory held per open stream.
#[derive(Clone)]
pub struct Backend(Arc<Inner>);

struct Inner {
    source: Source,
    first_token_timeout: Duration,
    idle_timeout: Duration,
    /// Every upstream failure is counted here, whoever ends up handling it.
    metrics: Arc<Metrics>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "built once per worker and kept behind the Arc; a box would only add a hop per request"
)]
enum Source {
    Mock(MockModel),
    Upstream(UpstreamClient),
}

impl Backend {
    pub fn new(settings: &Settings, metrics: &Arc<Metrics>) -> Result<Self, ClientBuildError> {
        let source = match &settings.upstream_base_url.0 {
            None => Source::Mock(MockModel::new(settings)),
            Some(base) => Source::Upstream(UpstreamClient::new(settings, base, metrics)?),
        };
        Ok(Self(Arc::new(Inner {
            source,
            first_token_timeout: Duration::from_secs(
                settings.upstream_first_token_timeout_secs.get(),
            ),
            idle_timeout: Duration::from_secs(settings.upstream_idle_timeout_secs.get()),
            metrics: Arc::clone(metrics),
        })))
    }

    /// Counts a failure on its way to the caller.
    fn counted<T>(&self, result: Result<T, UpstreamError>) -> Result<T, UpstreamError> {
        if let Err(error) = &result {
            self.0.metrics.upstream_error(error);
        }
        result
    }

    /// Starts a streaming generation and resolves once its first event has arrived, so a
    /// refusal, a failure or silence before it is an error the caller can still answer with
    /// a real HTTP status. Dropping the future (or the stream) drops the upstream request.
    pub async fn open(
        &self,
        request: &ChatRequest,
        request_id: &str,
    ) -> Result<Opened, UpstreamError> {
        let started = Instant::now();
        let opening = async {
            let mut stream: ChunkStream = match &self.0.source {
                Source::Mock(mock) => Box::pin(mock.stream(request)),
                Source::Upstream(client) => {
                    let data = client
                        .open_stream(request.upstream_body(), request_id)
                        .await?;
                    Box::pin(chunks(data))
                }
            };
            match stream.next().await {
                Some(Ok(first)) => Ok((first, stream)),
                Some(Err(e)) => Err(e),
                None => Err(UpstreamError::Truncated),
            }
        };
        let (first, rest) = self.counted(self.before_first_token(opening).await)?;
        let upstream_ttft = started.elapsed();
        Ok(Opened {
            chunks: Box::pin(Guarded::new(
                first,
                rest,
                self.0.idle_timeout,
                Arc::clone(&self.0.metrics),
            )),
            upstream_ttft,
        })
    }

    /// A non-streaming completion: the upstream's JSON body as it is.
    pub async fn complete(
        &self,
        request: &ChatRequest,
        request_id: &str,
    ) -> Result<Bytes, UpstreamError> {
        let answer = async {
            match &self.0.source {
                Source::Mock(mock) => mock.complete(request).await,
                Source::Upstream(client) => {
                    client.complete(request.upstream_body(), request_id).await
                }
            }
        };
        self.counted(self.before_first_token(answer).await)
    }

    /// `work`, failed with [`UpstreamError::FirstTokenTimeout`] if it takes longer than the
    /// first-token timeout.
    ///
    /// A plain function, not an `async fn`: an `async fn` would keep `work` twice in its
    /// state, once as its argument and once inside the awaited timeout, and the opening of
    /// every streamed request (~1.3 KiB of upstream exchange) would be boxed at twice its size.
    fn before_first_token<T>(
        &self,
        work: impl Future<Output = Result<T, UpstreamError>>,
    ) -> impl Future<Output = Result<T, UpstreamError>> {
        let limit = self.0.first_token_timeout;
        tokio::time::timeout(limit, work)
            .map(move |done| done.unwrap_or(Err(UpstreamError::FirstTokenTimeout(limit.as_secs()))))
    }

    /// The upstream's model list, or `None` in mock mode.
    pub async fn models(&self) -> Option<Result<Bytes, UpstreamError>> {
        match &self.0.source {
            Source::Mock(_) => None,
            Source::Upstream(client) => Some(self.counted(client.models().await)),
        }
    }

    /// Text from an upstream, made safe to show a client.
    pub fn sanitize(&self, message: &str) -> String {
        match &self.0.source {
            Source::Mock(_) => message.to_owned(),
            Source::Upstream(client) => client.sanitize(message),
        }
    }
}

pin_project_lite::pin_project! {
    /// The rest of a generation after its first event: ends with
    /// [`UpstreamError::IdleTimeout`] when no event comes for `idle`, and counts every
    /// failure it carries. There is deliberately no total timeout: a healthy long answer is
    /// never cut.
    ///
    /// One timer serves the whole stream. It is not reset per event (that would re-register
    /// it in the timer wheel every time); when it fires, it is re-armed from the last
    /// event's time if that was recent. It is held inline: this is boxed as a whole.
    struct Guarded {
        first: Option<Chunk>,
        stream: ChunkStream,
        idle: Duration,
        last_event: Instant,
        #[pin]
        timer: Sleep,
        metrics: Arc<Metrics>,
        over: bool,
    }
}

impl Guarded {
    fn new(first: Chunk, stream: ChunkStream, idle: Duration, metrics: Arc<Metrics>) -> Self {
        let now = Instant::now();
        Self {
            first: Some(first),
            stream,
            idle,
            last_event: now,
            timer: tokio::time::sleep_until(now + idle),
            metrics,
            over: false,
        }
    }
}

impl Stream for Guarded {
    type Item = Result<Chunk, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if *this.over {
            return Poll::Ready(None);
        }
        match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                *this.last_event = Instant::now();
                if let Err(error) = &item {
                    this.metrics.upstream_error(error);
                    *this.over = true;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                *this.over = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        while this.timer.as_mut().poll(cx).is_ready() {
            let due = *this.last_event + *this.idle;
            if Instant::now() >= due {
                *this.over = true;
                let error = UpstreamError::IdleTimeout(this.idle.as_secs());
                this.metrics.upstream_error(&error);
                return Poll::Ready(Some(Err(error)));
            }
            this.timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}
