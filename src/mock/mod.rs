//! The built-in mock model: an honest stand-in for an upstream. Deterministic text from the
//! prompt, paced like a real model, honouring `max_tokens`, with real usage counts and
//! failure knobs for front-end testing. Its chunks are real OpenAI chunk JSON, so the mock
//! gateway is itself a faithful upstream for another streamgate.

mod text;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};

use crate::request::{ChatRequest, PromptMessage};
use crate::settings::Settings;
use crate::upstream::{Chunk, UpstreamError, Usage};

#[derive(Clone, Debug)]
pub struct MockModel {
    ttft_ms: u64,
    tokens_per_sec: u64,
    max_tokens: u64,
}

/// Everything one answer needs, decided before the first token.
struct Plan {
    id: String,
    created: u64,
    model: String,
    tokens: Vec<String>,
    finish_reason: &'static str,
    usage: Usage,
    ttft: Duration,
    gap: Duration,
    fail_after: Option<u64>,
    stall_after: Option<u64>,
}

impl MockModel {
    pub fn new(settings: &Settings) -> Self {
        Self {
            ttft_ms: settings.mock_ttft_ms,
            tokens_per_sec: u64::from(settings.mock_tokens_per_sec),
            max_tokens: u64::from(settings.mock_max_tokens),
        }
    }

    fn plan(&self, request: &ChatRequest) -> Plan {
        let options = request.mock;
        let natural = options.tokens.unwrap_or(self.max_tokens);
        let (count, finish_reason) = match request.max_tokens {
            Some(limit) if limit < natural => (limit, "length"),
            _ => (natural, "stop"),
        };
        // Bounded so that a request cannot make the mock allocate without limit.
        let count = count.min(1_000_000);
        let messages = request.prompt();
        let prompt = last_user_text(&messages);
        let tokens = text::answer(prompt, count as usize);
        let prompt_tokens = messages
            .iter()
            .map(|m| 3 + text::count_tokens(&m.text))
            .sum::<u64>();
        let per_sec = options.tokens_per_sec.unwrap_or(self.tokens_per_sec);
        Plan {
            id: format!("chatcmpl-{}", crate::id::random_hex(12).unwrap_or_default()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: request.model.clone(),
            finish_reason,
            usage: Usage {
                prompt_tokens,
                completion_tokens: count,
                total_tokens: prompt_tokens + count,
            },
            tokens,
            ttft: Duration::from_millis(options.ttft_ms.unwrap_or(self.ttft_ms)),
            gap: if per_sec == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(1.0 / per_sec as f64)
            },
            fail_after: options.fail_after,
            stall_after: options.stall_after,
        }
    }

    /// The answer as a stream of chunks, ending with a finish chunk and a usage chunk.
    pub fn stream(
        &self,
        request: &ChatRequest,
    ) -> impl Stream<Item = Result<Chunk, UpstreamError>> + Send + use<> {
        let plan = self.plan(request);
        let start = Instant::now();
        // Steps: one per token, then the finish chunk, then the usage chunk.
        let steps = plan.tokens.len() + 2;
        futures::stream::unfold((plan, 0usize), move |(plan, step)| async move {
            if step >= steps {
                return None;
            }
            let emitted = step.min(plan.tokens.len()) as u64;
            if plan.stall_after.is_some_and(|n| emitted >= n) {
                futures::future::pending::<()>().await;
            }
            if plan.fail_after.is_some_and(|n| emitted >= n) {
                let error = UpstreamError::Reported(format!(
                    "mock failure after {emitted} tokens (requested by mock.fail_after)"
                ));
                return Some((Err(error), (plan, steps)));
            }
            let due = start
                + plan.ttft
                + plan.gap * (step.min(plan.tokens.len().saturating_sub(1)) as u32);
            sleep_until(due).await;
            let chunk = match step.checked_sub(plan.tokens.len()) {
                None => plan.chunk(json!({
                    "index": 0,
                    "delta": if step == 0 {
                        json!({"role": "assistant", "content": plan.tokens[step]})
                    } else {
                        json!({"content": plan.tokens[step]})
                    },
                    "logprobs": null,
                    "finish_reason": null,
                }), None),
                Some(0) => plan.chunk(json!({
                    "index": 0, "delta": {}, "logprobs": null, "finish_reason": plan.finish_reason,
                }), None),
                Some(_) => plan.chunk(Value::Null, Some(plan.usage)),
            };
            Some((chunk, (plan, step + 1)))
        })
    }

    /// The whole answer as one `chat.completion`, after the time streaming it would take.
    pub async fn complete(&self, request: &ChatRequest) -> Result<Bytes, UpstreamError> {
        let plan = self.plan(request);
        let count = plan.tokens.len() as u64;
        if plan.stall_after.is_some_and(|n| n < count) {
            futures::future::pending::<()>().await;
        }
        if let Some(n) = plan.fail_after.filter(|n| *n < count) {
            return Err(UpstreamError::Reported(format!(
                "mock failure after {n} tokens (requested by mock.fail_after)"
            )));
        }
        tokio::time::sleep(plan.ttft + plan.gap * (count.saturating_sub(1) as u32)).await;
        let body = json!({
            "id": plan.id,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": plan.tokens.concat()},
                "logprobs": null,
                "finish_reason": plan.finish_reason,
            }],
            "usage": plan.usage,
        });
        Ok(serde_json::to_vec(&body).map_or_else(|_| Bytes::new(), Bytes::from))
    }
}

impl Plan {
    /// A chunk with one choice, or (`choice` null) the usage chunk with empty `choices`.
    fn chunk(&self, choice: Value, usage: Option<Usage>) -> Result<Chunk, UpstreamError> {
        let choices = if choice.is_null() {
            json!([])
        } else {
            json!([choice])
        };
        let mut body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            body["usage"] = json!(usage);
        }
        let raw =
            serde_json::to_vec(&body).map_err(|e| UpstreamError::InvalidEvent(e.to_string()))?;
        Chunk::parse(Bytes::from(raw))
    }
}

fn last_user_text(messages: &[PromptMessage]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.text.as_str())
}
