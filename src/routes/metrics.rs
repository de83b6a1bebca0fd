//! `GET /metrics`: Prometheus' text exposition format.

use actix_web::{HttpResponse, web};

use crate::metrics::{CONTENT_TYPE, Gauges};
use crate::state::AppState;

pub async fn export(state: web::Data<AppState>) -> HttpResponse {
    let gauges = Gauges {
        active_streams: state.limits.active(),
        registry_streams: state.registry.len(),
    };
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render(&gauges))
}
