//! `X-Request-Id`: echoed when the client sent a sane one, generated otherwise, on every
//! response. The same middleware opens the request's summary line ([`RequestLog`], found by
//! handlers in the request's extensions) and counts `streamgate_requests_total`.

use std::sync::{Arc, LazyLock};

use actix_web::HttpMessage;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::metrics::Metrics;
use crate::request_log::{LoggedBody, RequestLog};
use crate::state::AppState;

const HEADER: HeaderName = HeaderName::from_static("x-request-id");

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A stream id is logged only when it has the shape of ours: the path is the client's input.
fn looks_like_stream_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A new request id, 16 hex characters: a random per-process prefix and a counter. Request
/// ids only need to be unique, not unguessable (stream ids are the capabilities), so this
/// costs no system call per request.
pub fn generate() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // Without randomness the ids are still unique within this process.
        let _ = getrandom::fill(&mut bytes);
        u32::from_ne_bytes(bytes)
    });
    let id = u64::from(prefix) << 32 | u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
    // By hand: `format!` took ~1,000 instructions of every request.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|nibble| char::from(HEX[(id >> (nibble * 4)) as usize & 0xf]))
        .collect()
}

pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Only an app built without its state (none is) lacks metrics; count into the void then.
    static DETACHED: LazyLock<Arc<Metrics>> = LazyLock::new(|| Metrics::new(&[]));
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map_or_else(|| Arc::clone(&DETACHED), |s| Arc::clone(&s.metrics));
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(generate, str::to_owned);
    // The matched pattern, never the raw path, so the label set stays bounded.
    let route = metrics.route(req.match_pattern().as_deref());
    let log = RequestLog::new(
        id.clone(),
        req.method().clone(),
        route,
        Arc::clone(&metrics),
    );
    req.extensions_mut().insert(log.clone());
    let mut res = match next.call(req).await {
        Ok(res) => res,
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            metrics.request(route, status);
            log.set_status(status);
            return Err(error);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    let status = res.status().as_u16();
    metrics.request(route, status);
    log.set_status(status);
    if let Some(stream_id) = res.request().match_info().get("id")
        && looks_like_stream_id(stream_id)
    {
        log.set_stream_id(stream_id);
    }
    Ok(res.map_body(|_, body| LoggedBody::new(body, log)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_a_prefix_and_a_counter_in_lowercase_hex() {
        let first = generate();
        let second = generate();
        for id in [&first, &second] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(acceptable(id));
        }
        assert_eq!(first[..8], second[..8], "one prefix per process");
        let counter = |id: &str| u32::from_str_radix(&id[8..], 16).unwrap();
        // Other tests may take ids in between, but never this one's again.
        assert!(counter(&second) > counter(&first), "{first} then {second}");
    }
}
