//! An upstream's answer, whichever client fetched it.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, future::Either};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderValue};

use super::h1;

pub enum Response {
    /// From a connection this stream drives itself (plain `http://` upstreams).
    Driven(h1::Answer),
    Reqwest(reqwest::Response),
}

impl Response {
    pub fn status(&self) -> StatusCode {
        match self {
            Response::Driven(answer) => answer.status,
            Response::Reqwest(response) => response.status(),
        }
    }

    pub fn content_type(&self) -> Option<&HeaderValue> {
        match self {
            Response::Driven(answer) => answer.content_type.as_ref(),
            Response::Reqwest(response) => response.headers().get(header::CONTENT_TYPE),
        }
    }

    pub fn retry_after(&self) -> Option<&HeaderValue> {
        match self {
            Response::Driven(answer) => answer.retry_after.as_ref(),
            Response::Reqwest(response) => response.headers().get(header::RETRY_AFTER),
        }
    }

    /// The body as it arrives; a transport failure is described, without the URL.
    pub fn into_body(self) -> impl Stream<Item = Result<Bytes, String>> + Send + use<> {
        match self {
            Response::Driven(answer) => Either::Left(answer.body),
            Response::Reqwest(response) => {
                Either::Right(response.bytes_stream().map_err(|e| describe(&e)))
            }
        }
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, String> {
        match self {
            Response::Driven(answer) => {
                let mut body = answer.body;
                let mut all = Vec::new();
                while let Some(chunk) = body.next().await {
                    all.extend_from_slice(&chunk?);
                }
                Ok(Bytes::from(all))
            }
            Response::Reqwest(response) => response.bytes().await.map_err(|e| describe(&e)),
        }
    }
}

/// A transport error's description with its root cause, without the URL (which may carry
/// credentials).
pub fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "the response body broke off"
    } else {
        "request failed"
    };
    // reqwest's own message is left out: it names the URL.
    match root_source(error) {
        Some(root) => format!("{what} ({root})"),
        None => what.to_owned(),
    }
}

/// The last error in `error`'s chain of sources, if it has any.
pub fn root_source<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    let mut root = error.source()?;
    while let Some(source) = root.source() {
        root = source;
    }
    Some(root)
}
