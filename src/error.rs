//! The one error type that crosses the HTTP boundary, answered in OpenAI's error shape.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the field and why.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("invalid or missing API key: send it as `Authorization: Bearer <key>` or `x-api-key`")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the request body did not arrive within {0} s")]
    RequestTimeout(u64),
    #[error("request body is larger than the limit of {limit} bytes (MAX_BODY_BYTES)")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
        limit: Option<u32>,
        remaining: Option<u32>,
    },
    /// The upstream failed or refused before the first token.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: param.into(),
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::InvalidRequest { .. } => ("invalid_request_error", "invalid_request"),
            ApiError::Unauthorized => ("authentication_error", "invalid_api_key"),
            ApiError::NotFound(_) => ("invalid_request_error", "not_found"),
            ApiError::MethodNotAllowed(_) => ("invalid_request_error", "method_not_allowed"),
            ApiError::PayloadTooLarge { .. } => ("invalid_request_error", "payload_too_large"),
            ApiError::RequestTimeout(_) => ("invalid_request_error", "request_timeout"),
            ApiError::RateLimited { .. } => ("rate_limit_exceeded", "rate_limit_exceeded"),
            ApiError::Upstream(e) if e.is_timeout() => ("upstream_error", "upstream_timeout"),
            ApiError::Upstream(e) => ("upstream_error", e.code()),
            ApiError::Unavailable(_) => ("server_error", "unavailable"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(e) => e.status(),
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (kind, code) = self.kind();
        let param = match self {
            ApiError::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::RateLimited {
                retry_after_secs,
                limit,
                remaining,
                ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                if let Some(limit) = limit {
                    response.insert_header(("x-ratelimit-limit", limit.to_string()));
                }
                if let Some(remaining) = remaining {
                    response.insert_header(("x-ratelimit-remaining", remaining.to_string()));
                }
            }
            ApiError::Upstream(UpstreamError::Status {
                retry_after: Some(secs),
                ..
            }) => {
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(json!({
            "error": { "message": self.to_string(), "type": kind, "param": param, "code": code }
        }))
    }
}
