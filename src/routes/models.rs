//! `GET /v1/models`, in OpenAI's list format.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.settings;
    // A configured allow-list is the truth about what clients may use here.
    if !settings.allowed_models.0.is_empty() {
        return model_list(settings.allowed_models.0.iter().map(String::as_str));
    }
    match state.backend.models().await {
        None => model_list([settings.default_model()]),
        Some(Ok(body)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(body),
        Some(Err(error)) => {
            tracing::warn!(%error, "the upstream's model list failed; answering with the default model");
            model_list([settings.default_model()])
        }
    }
}

fn model_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> HttpResponse {
    let data: Vec<_> = ids
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "streamgate"}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}
