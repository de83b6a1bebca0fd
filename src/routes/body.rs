//! Reading a request body with a size limit and a deadline, so neither a huge body nor a
//! body sent slowly and abandoned can hold memory or a worker.

use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::{HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::ApiError;

/// How long a client may take to send its body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                PayloadError::Incomplete(_) => ApiError::invalid(
                    format!(
                        "the request body could not be read: it ended after {} of {} bytes",
                        body.len(),
                        declared.map_or_else(|| "its".to_owned(), |n| n.to_string())
                    ),
                    None,
                ),
                e => ApiError::invalid(format!("the request body could not be read: {e}"), None),
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_DEADLINE, read)
        .await
        .map_err(|_| ApiError::RequestTimeout(BODY_DEADLINE.as_secs()))?
}
