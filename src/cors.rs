//! CORS for front-ends served from other origins (`CORS_ALLOWED_ORIGINS`), through
//! actix-cors. With no origins configured there is no CORS at all: only the gateway's own
//! page can read its answers.
//!
//! Wrapped outside the auth middleware, so a preflight (which never carries a key) is
//! answered here; its headers reach every response the wrapped service gives, streaming
//! ones included, because actix-cors sets them on the response head before the body runs.

use actix_cors::Cors;
use actix_web::http::Method;
use actix_web::middleware::Condition;

use crate::settings::Settings;
use crate::settings_values::Origins;

/// Response headers a cross-origin script may read.
const EXPOSED: [&str; 5] = [
    "x-stream-id",
    "x-request-id",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
];

/// Browsers cache a preflight answer this long (seconds); Chromium caps it at 2 hours.
const MAX_AGE: usize = 7200;

pub fn middleware(settings: &Settings) -> Condition<Cors> {
    let cors = match &settings.cors_allowed_origins {
        Origins::SameOrigin => return Condition::new(false, Cors::default()),
        // No credentials (cookies) are ever involved, so `*` itself can be sent.
        Origins::Any => common().allow_any_origin().send_wildcard(),
        // Origins are checked when settings are read, so none can fail here.
        Origins::List(origins) => origins
            .iter()
            .fold(common(), |cors, origin| cors.allowed_origin(origin)),
    };
    Condition::new(true, cors)
}

fn common() -> Cors {
    Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::DELETE])
        // Any request header an allowed origin asks for: the contract's four (Authorization,
        // Content-Type, Last-Event-ID, x-api-key) and X-Request-Id, but also what SDKs add
        // (the OpenAI JS SDK's x-stainless-*, OpenAI-Organization …), which a fixed list
        // would refuse. The origin list is the boundary; header names guard nothing here.
        .allow_any_header()
        .expose_headers(EXPOSED)
        .max_age(MAX_AGE)
}
