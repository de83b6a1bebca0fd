//! `X-Request-Id`: echoed when the client sent a sane one, generated otherwise, on every
//! response; handlers and logs find it in the request's extensions.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

const HEADER: HeaderName = HeaderName::from_static("x-request-id");

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::id::random_hex(8).unwrap_or_else(|_| "unknown".to_owned()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    tracing::info!(
        target: "streamgate::request",
        request_id = %id,
        method = %res.request().method(),
        route = res.request().match_pattern().as_deref().unwrap_or("-"),
        status = res.status().as_u16(),
        headers_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}
