//! The HTTP surface: thin handlers, one file per concern.

mod body;
mod chat;
mod completions;
mod health;
mod metrics;
mod models;
mod page;
mod streams;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

pub use body::read_body;

use crate::error::ApiError;
use crate::limits::{ClientId, Permit};
use crate::relay::Outcome;
use crate::request::ChatRequest;
use crate::request_log::RequestLog;
use crate::state::AppState;

const COMPLETIONS: &str = "/v1/chat/completions";
const MODELS: &str = "/v1/models";
const CHAT: &str = "/api/chat";
const MESSAGES: &str = "/api/chat/messages";
const STREAM: &str = "/api/chat/streams/{id}";
const PAGE: &str = "/";
const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const METRICS: &str = "/metrics";

/// Every route pattern served: the `route` label's values (one more, `unmatched`, for the
/// rest), fixed so that no request can add one.
pub const PATTERNS: [&str; 9] = [
    COMPLETIONS,
    MODELS,
    CHAT,
    MESSAGES,
    STREAM,
    PAGE,
    HEALTHZ,
    READYZ,
    METRICS,
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(COMPLETIONS)
            .post(completions::create)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(MODELS)
            .get(models::list)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(CHAT)
            .post(chat::create_and_stream)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(MESSAGES)
            .post(streams::create)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(STREAM)
            .get(streams::read)
            .delete(streams::cancel)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource(PAGE)
            .get(page::index)
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource(HEALTHZ).get(health::live))
    .service(web::resource(READYZ).get(health::ready))
    .service(web::resource(METRICS).get(metrics::export))
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.path()
    )))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} is not supported on {}",
        req.method(),
        req.path()
    )))
}

/// The request's summary line, as the request-id middleware opened it.
pub fn request_log(req: &HttpRequest, state: &AppState) -> RequestLog {
    req.extensions()
        .get::<RequestLog>()
        .cloned()
        .unwrap_or_else(|| {
            // Only an app without the middleware gets here: log the request all the same.
            RequestLog::new(
                crate::request_id::generate(),
                req.method().clone(),
                state.metrics.route(req.match_pattern().as_deref()),
                Arc::clone(&state.metrics),
            )
        })
}

/// A generation's accounting, once the limits have admitted it, so that a refused request
/// never looks like a generation that was started and cancelled.
pub fn outcome_for(
    req: &HttpRequest,
    state: &AppState,
    request: &ChatRequest,
) -> Result<Outcome, ApiError> {
    let slot = admit_generation(req, state)?;
    Ok(Outcome::new(
        request_log(req, state),
        &state.metrics,
        request,
        slot,
    ))
}

/// Who is asking, as the auth middleware established.
pub fn client_id(req: &HttpRequest) -> ClientId {
    req.extensions()
        .get::<ClientId>()
        .cloned()
        .unwrap_or(ClientId::Unknown)
}

/// Lets a parsed request start a generation, or refuses it (429, or 503 when the gateway is
/// full). The concurrency slot is taken before the rate is charged: a slot can be given back
/// and a rate cell cannot, so a request refused for concurrency, which starts nothing, does
/// not count toward the client's rate.
pub fn admit_generation(req: &HttpRequest, state: &AppState) -> Result<Permit, ApiError> {
    let client = client_id(req);
    let slot = state.limits.acquire(&client)?;
    state.rate_limits.check(&client)?;
    Ok(slot)
}

/// `204 No Content`, for answers with nothing to say.
fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

use actix_web::HttpMessage as _;
