//! What can go wrong with an upstream, before and after its first event.

use actix_web::http::StatusCode;

/// An upstream failure. Messages are safe to show a client: they never carry the upstream
/// key or URL credentials (see [`crate::upstream::sanitize`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not reach the upstream: {0}")]
    Transport(String),
    /// The upstream refused the request with a non-2xx status.
    #[error("the upstream answered {status}: {message}")]
    Status {
        status: StatusCode,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("the upstream sent no event within {0} s")]
    FirstTokenTimeout(u64),
    #[error("the upstream was silent for more than {0} s")]
    IdleTimeout(u64),
    /// An error the upstream reported inside its stream (`{"error":…}` or vLLM's shape).
    #[error("the upstream reported an error: {0}")]
    Reported(String),
    #[error("the upstream sent an invalid event: {0}")]
    InvalidEvent(String),
    #[error("the upstream ended the stream without [DONE] or a finish_reason")]
    Truncated,
    #[error("the upstream answered with content type {0:?} instead of text/event-stream")]
    NotAStream(String),
}

impl UpstreamError {
    /// The status a client gets when this happens before the stream began.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Status { status, .. } if status.is_client_error() => *status,
            UpstreamError::FirstTokenTimeout(_) | UpstreamError::IdleTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The machine-readable code of a mid-stream `error` event.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::FirstTokenTimeout(_) | UpstreamError::IdleTimeout(_) => {
                "upstream_timeout"
            }
            UpstreamError::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                "rate_limit_exceeded"
            }
            _ => "upstream_error",
        }
    }

    /// Worth another attempt before the first token: nothing reached the client yet and the
    /// upstream may do better next time.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Transport(_) => true,
            UpstreamError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            _ => false,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::FirstTokenTimeout(_) | UpstreamError::IdleTimeout(_)
        )
    }

    /// Every value [`UpstreamError::kind`] takes, for metrics that list them all.
    pub const KINDS: [&'static str; 8] = [
        "transport",
        "status",
        "first_token_timeout",
        "idle_timeout",
        "reported",
        "invalid_event",
        "truncated",
        "not_a_stream",
    ];

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Transport(_) => "transport",
            UpstreamError::Status { .. } => "status",
            UpstreamError::FirstTokenTimeout(_) => "first_token_timeout",
            UpstreamError::IdleTimeout(_) => "idle_timeout",
            UpstreamError::Reported(_) => "reported",
            UpstreamError::InvalidEvent(_) => "invalid_event",
            UpstreamError::Truncated => "truncated",
            UpstreamError::NotAStream(_) => "not_a_stream",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_for_metrics() {
        let errors = [
            UpstreamError::Transport(String::new()),
            UpstreamError::Status {
                status: StatusCode::BAD_GATEWAY,
                message: String::new(),
                retry_after: None,
            },
            UpstreamError::FirstTokenTimeout(1),
            UpstreamError::IdleTimeout(1),
            UpstreamError::Reported(String::new()),
            UpstreamError::InvalidEvent(String::new()),
            UpstreamError::Truncated,
            UpstreamError::NotAStream(String::new()),
        ];
        let kinds: Vec<_> = errors.iter().map(UpstreamError::kind).collect();
        assert_eq!(kinds, UpstreamError::KINDS);
    }
}
