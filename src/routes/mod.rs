//! The HTTP surface: thin handlers, one file per concern.

mod body;
mod chat;
mod completions;
mod health;
mod models;
mod page;
mod streams;

use actix_web::{HttpRequest, HttpResponse, web};

pub use body::read_body;

use crate::error::ApiError;
use crate::limits::{ClientId, Permit};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/chat/completions")
            .post(completions::create)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models")
            .get(models::list)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/chat")
            .post(chat::create_and_stream)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/chat/messages")
            .post(streams::create)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/chat/streams/{id}")
            .get(streams::read)
            .delete(streams::cancel)
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/")
            .get(page::index)
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/healthz").get(health::live))
    .service(web::resource("/readyz").get(health::ready))
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

/// The request id the request-id middleware settled on.
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<crate::request_id::RequestId>()
        .map_or_else(String::new, |id| id.0.clone())
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
