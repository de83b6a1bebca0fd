//! `GET /`: the built-in chat page, compiled into the binary (no CDN, no build step).

use actix_web::HttpResponse;
use actix_web::http::header;

const PAGE: &str = include_str!("../../web/index.html");

pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // The page needs nothing from elsewhere; say so, so injected markup could not load any.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        ))
        .body(PAGE)
}
