//! `POST /v1/chat/completions`: OpenAI's own format, streaming or not.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures::StreamExt;

use super::{outcome_for, read_body};
use crate::error::ApiError;
use crate::relay::openai::{self, Opening, Start};
use crate::relay::{Finish, Outcome};
use crate::request::{ChatRequest, Dialect};
use crate::sse::{self, Heartbeat, PING};
use crate::state::AppState;

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.lifecycle.admit()?;
    let body = read_body(&req, payload, state.settings.max_body_bytes).await?;
    let request = ChatRequest::parse(&body, Dialect::OpenAi, &state.settings)?;
    let mut outcome = outcome_for(&req, &state, &request)?;
    let request_id = outcome.request_id().to_owned();

    if !request.stream {
        // Boxed: the upstream exchange's future is ~2.7 KiB, and held inline it would size
        // every request's handler future for this path, streaming ones included.
        let answer = Box::pin(state.backend.complete(&request, &request_id)).await;
        return match answer {
            Ok(body) => {
                note_completion(&mut outcome, &body);
                Ok(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body))
            }
            Err(error) => {
                outcome.finish(Finish::from_error(&error));
                Err(error.into())
            }
        };
    }

    let backend = state.backend.clone();
    let include_usage = request.include_usage;
    let mut opening: Opening = Box::pin(async move { backend.open(&request, &request_id).await });
    // Built while the upstream thinks, not in the burst of first tokens that ends the wait.
    let mut response = sse::ok();
    // Commit late: wait for the upstream's first event so that a refusal is a real HTTP
    // status, but no longer than a heartbeat period, after which 200 goes out and pings
    // keep proxies from cutting a model that thinks for minutes.
    let (start, committed_early) = match tokio::time::timeout(state.heartbeat(), &mut opening).await
    {
        Ok(Ok(opened)) => (Start::Opened(opened), false),
        Ok(Err(error)) => {
            outcome.finish(Finish::from_error(&error));
            return Err(error.into());
        }
        Err(_) => (Start::Opening(opening), true),
    };
    let relay = openai::body(
        start,
        include_usage,
        state.lifecycle.cut_token(),
        outcome,
        state.backend.clone(),
    );
    let early_ping = futures::stream::iter(committed_early.then(|| Ok(Bytes::from_static(PING))));
    Ok(response.streaming(Heartbeat::new(early_ping.chain(relay), state.heartbeat())))
}

/// Takes the usage and finish reason from a non-streaming answer, for the summary log.
fn note_completion(outcome: &mut Outcome, body: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: Option<crate::upstream::Usage>,
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        finish_reason: Option<String>,
    }
    if let Ok(answer) = serde_json::from_slice::<Answer>(body) {
        outcome.usage = answer.usage;
        outcome.deltas = answer.usage.map_or(0, |u| u.completion_tokens);
        let reason = answer.choices.into_iter().find_map(|c| c.finish_reason);
        outcome.finish(Finish::Upstream(
            reason.unwrap_or_else(|| "stop".to_owned()),
        ));
    } else {
        outcome.finish(Finish::Upstream("stop".to_owned()));
    }
}
