//! Who a request comes from, and whether it may do what it asks. Every route needs a
//! gateway key when `GATEWAY_API_KEYS` is set, except an explicit open list: health,
//! metrics, the page, and reading or cancelling a stream by id (the id is the capability).

use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use crate::error::ApiError;
use crate::limits::ClientId;
use crate::settings::Settings;
use crate::state::AppState;

/// CORS preflights are not on this list: the CORS middleware, outside this one, answers
/// them before they get here.
fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/api/chat/streams/")
}

/// The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`.
fn presented_key(req: &ServiceRequest) -> Option<&[u8]> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        });
    bearer.or_else(|| req.headers().get("x-api-key").map(|v| v.as_bytes()))
}

/// The client's address: the peer, or with `TRUST_PROXY` the last `X-Forwarded-For` entry
/// (the one the trusted proxy itself appended; earlier entries are the client's to forge).
fn client_ip(req: &ServiceRequest, settings: &Settings) -> Option<IpAddr> {
    if settings.trust_proxy {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// The start-up warning for a gateway anyone on the network can use: no keys, and an
/// address other than loopback.
pub fn exposure_warning(settings: &Settings) -> Option<String> {
    let host = settings.host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (settings.gateway_api_keys.0.is_empty() && !loopback).then(|| {
        format!(
            "OPEN GATEWAY: listening on {} with no GATEWAY_API_KEYS; anyone who can reach this address can spend your upstream quota. Set GATEWAY_API_KEYS, or HOST=127.0.0.1",
            settings.host
        )
    })
}

pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let keys = &state.settings.gateway_api_keys.0;
    let matched = presented_key(&req).and_then(|k| keys.iter().position(|key| key.matches(k)));
    let client = match matched {
        Some(index) => ClientId::Key(index),
        None if keys.is_empty() || is_open(req.path()) => {
            client_ip(&req, &state.settings).map_or(ClientId::Unknown, ClientId::Ip)
        }
        None => {
            let response = ApiError::Unauthorized.error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    };
    req.extensions_mut().insert(client);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(pairs: &[(&str, &str)]) -> Option<String> {
        exposure_warning(&Settings::from_pairs(pairs).unwrap())
    }

    #[test]
    fn an_open_gateway_on_a_public_address_is_warned_about() {
        let text = warning(&[("HOST", "0.0.0.0")]).expect("a warning");
        assert!(
            text.contains("GATEWAY_API_KEYS") && text.contains("0.0.0.0"),
            "{text}"
        );
        assert!(warning(&[("HOST", "::")]).is_some());
        assert!(warning(&[("HOST", "gateway.internal")]).is_some());
    }

    #[test]
    fn loopback_or_keys_need_no_warning() {
        for host in ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"] {
            assert_eq!(warning(&[("HOST", host)]), None, "{host}");
        }
        assert_eq!(
            warning(&[("HOST", "0.0.0.0"), ("GATEWAY_API_KEYS", "k")]),
            None
        );
    }

    #[test]
    fn keys_never_show_in_logged_settings() {
        let settings = Settings::from_pairs(&[("GATEWAY_API_KEYS", "sk-gw-1,sk-gw-2")]).unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("sk-gw"), "{shown}");
    }

    #[test]
    fn only_the_documented_routes_are_open() {
        for path in [
            "/",
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/chat/streams/abc",
        ] {
            assert!(is_open(path), "{path}");
        }
        for path in [
            "/v1/chat/completions",
            "/v1/models",
            "/api/chat",
            "/api/chat/messages",
            "/api/chat/streams",
            "/nope",
        ] {
            assert!(!is_open(path), "{path}");
        }
    }
}
