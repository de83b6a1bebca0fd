//! Where answers come from: the built-in mock model or an upstream, behind one interface
//! that applies the first-token and idle timeouts the same way to both.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::mock::MockModel;
use crate::request::ChatRequest;
use crate::settings::Settings;
use crate::upstream::{Chunk, ClientBuildError, UpstreamClient, UpstreamError, chunks};

/// A generation's chunks after the first event arrived; it ends with `Err` on failure.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, UpstreamError>> + Send>>;

#[derive(Clone)]
pub struct Backend {
    source: Source,
    first_token_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Clone)]
enum Source {
    Mock(MockModel),
    Upstream(UpstreamClient),
}

impl Backend {
    pub fn new(settings: &Settings) -> Result<Self, ClientBuildError> {
        let source = match &settings.upstream_base_url.0 {
            None => Source::Mock(MockModel::new(settings)),
            Some(base) => Source::Upstream(UpstreamClient::new(settings, base)?),
        };
        Ok(Self {
            source,
            first_token_timeout: Duration::from_secs(
                settings.upstream_first_token_timeout_secs.get(),
            ),
            idle_timeout: Duration::from_secs(settings.upstream_idle_timeout_secs.get()),
        })
    }

    /// Starts a streaming generation and resolves once its first event has arrived, so a
    /// refusal, a failure or silence before it is an error the caller can still answer with
    /// a real HTTP status. Dropping the future (or the stream) drops the upstream request.
    pub async fn open(
        &self,
        request: &ChatRequest,
        request_id: &str,
    ) -> Result<ChunkStream, UpstreamError> {
        let opening = async {
            let mut stream: ChunkStream = match &self.source {
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
        let (first, rest) = tokio::time::timeout(self.first_token_timeout, opening)
            .await
            .map_err(|_| UpstreamError::FirstTokenTimeout(self.first_token_timeout.as_secs()))??;
        let rest = with_idle_timeout(rest, self.idle_timeout);
        Ok(Box::pin(
            futures::stream::once(async { Ok(first) }).chain(rest),
        ))
    }

    /// A non-streaming completion: the upstream's JSON body as it is.
    pub async fn complete(
        &self,
        request: &ChatRequest,
        request_id: &str,
    ) -> Result<Bytes, UpstreamError> {
        let answer = async {
            match &self.source {
                Source::Mock(mock) => mock.complete(request).await,
                Source::Upstream(client) => {
                    client.complete(request.upstream_body(), request_id).await
                }
            }
        };
        tokio::time::timeout(self.first_token_timeout, answer)
            .await
            .map_err(|_| UpstreamError::FirstTokenTimeout(self.first_token_timeout.as_secs()))?
    }

    /// The upstream's model list, or `None` in mock mode.
    pub async fn models(&self) -> Option<Result<Bytes, UpstreamError>> {
        match &self.source {
            Source::Mock(_) => None,
            Source::Upstream(client) => Some(client.models().await),
        }
    }

    /// Text from an upstream, made safe to show a client.
    pub fn sanitize(&self, message: &str) -> String {
        match &self.source {
            Source::Mock(_) => message.to_owned(),
            Source::Upstream(client) => client.sanitize(message),
        }
    }
}

/// Ends the stream with [`UpstreamError::IdleTimeout`] when no event comes for `idle`.
/// There is deliberately no total timeout: a healthy long answer is never cut.
fn with_idle_timeout(
    stream: ChunkStream,
    idle: Duration,
) -> impl Stream<Item = Result<Chunk, UpstreamError>> + Send {
    futures::stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(UpstreamError::IdleTimeout(idle.as_secs())), None)),
        }
    })
}
