//! The EventSource flow: `POST /api/chat/messages` starts a generation, `GET
//! /api/chat/streams/{id}` reads it (resuming after `Last-Event-ID`), `DELETE` cancels it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::json;

use super::{no_content, outcome_for, read_body};
use crate::error::ApiError;
use crate::registry::{Entry, Subscription, run_generation};
use crate::relay::Finish;
use crate::relay::browser::RETRY;
use crate::request::{ChatRequest, Dialect};
use crate::sse::{self, Heartbeat};
use crate::state::AppState;

/// Parses, admits and starts a browser generation in the registry.
pub async fn start_generation(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Arc<Entry>, ApiError> {
    state.lifecycle.admit()?;
    let body = read_body(req, payload, state.settings.max_body_bytes).await?;
    let request = ChatRequest::parse(&body, Dialect::Browser, &state.settings)?;
    let mut outcome = outcome_for(req, state, &request)?;
    let entry = state.registry.create().inspect_err(|_| {
        outcome.finish(Finish::Error("unavailable"));
    })?;
    actix_web::rt::spawn(run_generation(
        Arc::clone(&entry),
        state.backend.clone(),
        request,
        state.lifecycle.cut_token(),
        outcome,
    ));
    Ok(entry)
}

/// A browser stream's body: `retry:`, then its events from the reader's position on.
pub fn events_body(
    reader: Subscription,
    heartbeat: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    Heartbeat::new(
        futures::stream::once(async { Ok(Bytes::from_static(RETRY)) }).chain(reader.map(Ok)),
        heartbeat,
    )
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = start_generation(&req, payload, &state).await?;
    let expires_at = entry.created_unix + state.registry.grace().as_secs();
    Ok(HttpResponse::Created().json(json!({
        "id": entry.id,
        "stream_url": format!("/api/chat/streams/{}", entry.id),
        "expires_at": expires_at,
    })))
}

#[derive(serde::Deserialize)]
pub struct ReadQuery {
    last_event_id: Option<String>,
}

pub async fn read(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ReadQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = state.registry.get(&id).ok_or_else(|| unknown_stream(&id))?;
    let header = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("invalid").to_owned());
    let after = match header.or_else(|| query.into_inner().last_event_id) {
        None => 0,
        Some(text) if text.trim().is_empty() => 0,
        Some(text) => text.trim().parse::<u64>().map_err(|_| {
            ApiError::invalid(
                format!("Last-Event-ID must be an event number, got {text:?}"),
                Some("last_event_id".to_owned()),
            )
        })?,
    };
    // Past the end of a finished stream: 204 tells EventSource to stop reconnecting.
    if entry.is_finished() && after >= entry.event_count() {
        return Ok(no_content());
    }
    Ok(sse::ok()
        .insert_header(("x-stream-id", entry.id.as_str()))
        .streaming(events_body(entry.subscribe(after), state.heartbeat())))
}

pub async fn cancel(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = state.registry.get(&id).ok_or_else(|| unknown_stream(&id))?;
    entry.cancel("deleted");
    Ok(no_content())
}

fn unknown_stream(id: &str) -> ApiError {
    // The id is echoed only when it looks like one of ours: it is the client's own input.
    let shown = if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id
    } else {
        "(malformed id)"
    };
    ApiError::NotFound(format!("stream {shown} is unknown or has expired"))
}
