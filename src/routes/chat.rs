//! `POST /api/chat`: start a browser generation and stream it on the same response.
//! The generation lives in the registry, so the answer can also be resumed by id
//! (`X-Stream-Id`) when this connection drops.

use actix_web::{HttpRequest, HttpResponse, web};

use super::streams::{events_body, start_generation};
use crate::error::ApiError;
use crate::sse;
use crate::state::AppState;

pub async fn create_and_stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = start_generation(&req, payload, &state).await?;
    let mut reader = entry.subscribe(0);
    // As on the OpenAI route: wait for the first event (at most a heartbeat period) so
    // that an upstream that refuses gives this request a real 502/504.
    let answered = tokio::time::timeout(state.heartbeat(), reader.ready()).await;
    if let (Ok(()), Some(error)) = (answered, entry.opening_error()) {
        return Err(error.into());
    }
    Ok(sse::ok()
        .insert_header(("x-stream-id", entry.id.as_str()))
        .streaming(events_body(reader, state.heartbeat())))
}
