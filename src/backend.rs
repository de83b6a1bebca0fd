//! Where answers come from: the built-in mock model or an upstream, behind one interface
//! that applies the first-token and idle timeouts the same way to both.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

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

#[derive(Clone)]
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
        let opened = tokio::time::timeout(self.0.first_token_timeout, opening)
            .await
            .map_err(|_| UpstreamError::FirstTokenTimeout(self.0.first_token_timeout.as_secs()))
            .and_then(|opened| opened);
        let (first, rest) = self.counted(opened)?;
        let upstream_ttft = started.elapsed();
        let rest = guarded(rest, self.0.idle_timeout, Arc::clone(&self.0.metrics));
        Ok(Opened {
            chunks: Box::pin(futures::stream::once(async { Ok(first) }).chain(rest)),
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
        let answer = tokio::time::timeout(self.0.first_token_timeout, answer)
            .await
            .map_err(|_| UpstreamError::FirstTokenTimeout(self.0.first_token_timeout.as_secs()))
            .and_then(|answer| answer);
        self.counted(answer)
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

/// Ends the stream with [`UpstreamError::IdleTimeout`] when no event comes for `idle`, and
/// counts every failure it carries. There is deliberately no total timeout: a healthy long
/// answer is never cut.
fn guarded(
    stream: ChunkStream,
    idle: Duration,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Result<Chunk, UpstreamError>> + Send {
    // The metrics handle travels in the state, so no reference count is touched per event.
    futures::stream::unfold(Some((stream, metrics)), move |state| async move {
        let (mut stream, metrics) = state?;
        let (item, go_on) = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => (item, true),
            Ok(None) => return None,
            Err(_) => (Err(UpstreamError::IdleTimeout(idle.as_secs())), false),
        };
        if let Err(error) = &item {
            metrics.upstream_error(error);
        }
        Some((item, go_on.then_some((stream, metrics))))
    })
}
