//! The HTTP client for an OpenAI-compatible upstream: connection pool, retries before the
//! first token, status and content-type checks before anything is committed to a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use actix_web::http::StatusCode;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::UpstreamError;
use super::h1::{FieldValue, Fields, Http1};
use super::response::{Response, describe};
use super::sanitize::sanitize;
use super::sse::{Event, data_events};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::settings::Settings;

/// Largest error body read from an upstream that refused a request.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A `Retry-After` longer than this is not waited for: the refusal goes to the client.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("UPSTREAM_BASE_URL does not make a valid endpoint URL: {0}")]
    Url(#[from] url::ParseError),
}

/// Sent with every request, here and through reqwest alike.
const USER_AGENT: &str = concat!("streamgate/", env!("CARGO_PKG_VERSION"));
const REQUEST_ID: &str = "x-request-id";

pub struct UpstreamClient {
    http: reqwest::Client,
    /// Completions go this way when the upstream is plain `http://` (see [`Http1`]).
    driven: Option<Http1>,
    /// Set once the upstream redirected a completion: from then on they go through reqwest,
    /// which follows redirects, rather than each being asked twice.
    redirects: AtomicBool,
    completions_url: reqwest::Url,
    models_url: reqwest::Url,
    key: Secret,
    /// `Bearer <key>`, built once (None without a key): it goes out with every request.
    authorization: Option<HeaderValue>,
    /// [`common_headers`] as `driven` writes them, for streaming and whole answers: built
    /// once, not per request.
    streaming_fields: Fields,
    whole_fields: Fields,
    retries: u32,
    /// Counts the attempts that are retried; the final error is counted by whoever gets it.
    metrics: Arc<Metrics>,
}

impl UpstreamClient {
    pub fn new(
        settings: &Settings,
        base: &reqwest::Url,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, ClientBuildError> {
        let connect_timeout = Duration::from_secs(settings.upstream_connect_timeout_secs.get());
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            // The upstream socket carries small, latency-sensitive writes too.
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(USER_AGENT)
            .build()?;
        let base = base.as_str().trim_end_matches('/');
        let join = |path: &str| reqwest::Url::parse(&format!("{base}/{path}"));
        let completions_url = join("chat/completions")?;
        let authorization = bearer(&settings.upstream_api_key);
        let fields = |stream| Fields::new(&common_headers(authorization.as_ref(), stream));
        Ok(Self {
            streaming_fields: fields(true),
            whole_fields: fields(false),
            http,
            driven: Http1::for_endpoint(&completions_url, connect_timeout),
            redirects: AtomicBool::new(false),
            completions_url,
            models_url: join("models")?,
            key: settings.upstream_api_key.clone(),
            authorization,
            retries: settings.upstream_retries,
            metrics: Arc::clone(metrics),
        })
    }

    pub fn sanitize(&self, message: &str) -> String {
        sanitize(message, &self.key)
    }

    /// POSTs a streaming request and returns its `data` payloads once the upstream has
    /// accepted it (2xx, `text/event-stream`). Refusals worth it are retried with backoff;
    /// nothing has reached the client yet, so a retry is invisible to it.
    pub async fn open_stream(
        &self,
        body: Bytes,
        request_id: &str,
    ) -> Result<impl Stream<Item = Result<Event, UpstreamError>> + Send + use<>, UpstreamError>
    {
        let response = self.send_with_retries(body, request_id, true).await?;
        let content_type = response.content_type().and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_event_stream) {
            let content_type = content_type.unwrap_or("").to_owned();
            // Some upstreams answer a streaming request with a JSON error and status 200.
            let text = read_bounded(response.into_body()).await;
            return Err(match error_message(&text) {
                Some(message) => UpstreamError::Reported(self.sanitize(&message)),
                None => UpstreamError::NotAStream(self.sanitize(&content_type)),
            });
        }
        let key = self.key.clone();
        let bytes = response.into_body().map_err(move |e| sanitize(&e, &key));
        Ok(data_events(bytes))
    }

    /// POSTs a non-streaming request; the status and body are the upstream's own.
    pub async fn complete(&self, body: Bytes, request_id: &str) -> Result<Bytes, UpstreamError> {
        let response = self.send_with_retries(body, request_id, false).await?;
        response
            .bytes()
            .await
            .map_err(|e| UpstreamError::Transport(self.sanitize(&e)))
    }

    /// The upstream's `GET /models`, relayed as it is.
    pub async fn models(&self) -> Result<Bytes, UpstreamError> {
        let mut request = self.http.get(self.models_url.clone());
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let response = request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| UpstreamError::Transport(self.sanitize(&describe(&e))))?;
        let response = self.check_status(Response::Reqwest(response)).await?;
        response
            .bytes()
            .await
            .map_err(|e| UpstreamError::Transport(self.sanitize(&e)))
    }

    async fn send_with_retries(
        &self,
        body: Bytes,
        request_id: &str,
        stream: bool,
    ) -> Result<Response, UpstreamError> {
        let mut attempt = 0;
        loop {
            let result = match self.send(&body, request_id, stream).await {
                Ok(response) => self.check_status(response).await,
                Err(e) => Err(UpstreamError::Transport(self.sanitize(&e))),
            };
            let error = match result {
                Ok(response) => return Ok(response),
                Err(e) if attempt < self.retries && e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            let backoff = Duration::from_millis(250 << attempt.min(6));
            let wait = match &error {
                UpstreamError::Status {
                    retry_after: Some(secs),
                    ..
                } => Duration::from_secs(*secs).max(backoff),
                _ => backoff,
            };
            if wait > MAX_RETRY_WAIT {
                return Err(error);
            }
            self.metrics.upstream_error(&error);
            tracing::warn!(attempt, error = %error, "upstream attempt failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt at a completion request.
    async fn send(&self, body: &Bytes, request_id: &str, stream: bool) -> Result<Response, String> {
        if let Some(driven) = self
            .driven
            .as_ref()
            .filter(|_| !self.redirects.load(Relaxed))
        {
            let fields = if stream {
                &self.streaming_fields
            } else {
                &self.whole_fields
            };
            // Ids are checked where they are assigned; one that still is no header value is
            // left out.
            let id = FieldValue::new(request_id).map(|id| (REQUEST_ID, id));
            let answer = driven.post(fields, id, body).await?;
            if !answer.status.is_redirection() {
                return Ok(Response::Driven(answer));
            }
            // Asked again through reqwest, which follows redirects with its policy on where
            // the key may go.
            self.redirects.store(true, Relaxed);
            tracing::info!(
                status = answer.status.as_u16(),
                "the upstream redirects; completions go through reqwest from now on"
            );
        }
        self.http
            .post(self.completions_url.clone())
            .headers(self.headers(request_id, stream))
            .body(body.clone())
            .send()
            .await
            .map(Response::Reqwest)
            .map_err(|e| describe(&e))
    }

    fn headers(&self, request_id: &str, stream: bool) -> HeaderMap {
        let mut headers = common_headers(self.authorization.as_ref(), stream);
        // Ids are checked where they are assigned; one that still is no header value is left out.
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID, id);
        }
        headers
    }

    async fn check_status(&self, response: Response) -> Result<Response, UpstreamError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .retry_after()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = read_bounded(response.into_body()).await;
        let message = error_message(&text).unwrap_or_else(|| {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            } else {
                trimmed.to_owned()
            }
        });
        Err(UpstreamError::Status {
            status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            message: self.sanitize(&message),
            retry_after,
        })
    }
}

/// Whether a Content-Type names `text/event-stream`, parameters or not. Media types are
/// case-insensitive (RFC 9110 §8.3.1): `Text/Event-Stream` is one too.
fn is_event_stream(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default();
    media_type.trim().eq_ignore_ascii_case("text/event-stream")
}

/// What every completion request carries but its id.
fn common_headers(authorization: Option<&HeaderValue>, stream: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(5);
    let json = HeaderValue::from_static("application/json");
    headers.insert(header::CONTENT_TYPE, json);
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    let accept = if stream { "text/event-stream" } else { "*/*" };
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    if let Some(authorization) = authorization {
        headers.insert(header::AUTHORIZATION, authorization.clone());
    }
    headers
}

/// The `Authorization` value for an upstream key, marked sensitive so it is never logged.
fn bearer(key: &Secret) -> Option<HeaderValue> {
    if key.is_empty() {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    Some(value)
}

/// Reads at most [`MAX_ERROR_BODY`] of a body as text.
async fn read_bounded(stream: impl Stream<Item = Result<Bytes, String>>) -> String {
    let mut body = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(Ok(chunk)) = stream.next().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The message of an error body in the shapes upstreams use: OpenAI's `{"error":{"message"}}`,
/// `{"error":"…"}`, vLLM's `{"object":"error","message"}` and FastAPI's `{"detail"}`.
fn error_message(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let candidates = [
        value.pointer("/error/message"),
        value.get("error"),
        value.get("message"),
        value.get("detail"),
    ];
    candidates.into_iter().flatten().find_map(|v| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null | serde_json::Value::Object(_) => None,
        other => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_is_built_once_per_key_and_never_without_one() {
        assert!(bearer(&Secret::new("")).is_none());
        let value = bearer(&Secret::new("sk-abc")).expect("a header for a key");
        assert_eq!(value.to_str().unwrap(), "Bearer sk-abc");
        assert!(value.is_sensitive(), "kept out of logs");
    }

    #[test]
    fn error_messages_are_found_in_every_shape() {
        assert_eq!(
            error_message(r#"{"error":{"message":"m1"}}"#).unwrap(),
            "m1"
        );
        assert_eq!(error_message(r#"{"error":"m2"}"#).unwrap(), "m2");
        assert_eq!(
            error_message(r#"{"object":"error","message":"m3"}"#).unwrap(),
            "m3"
        );
        assert_eq!(error_message(r#"{"detail":"m4"}"#).unwrap(), "m4");
        assert!(error_message("<html>").is_none());
    }
}
