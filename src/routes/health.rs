//! Liveness and readiness for orchestrators.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 503 while shutting down, so a load balancer stops sending new work here.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.lifecycle.is_draining() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    }
}
