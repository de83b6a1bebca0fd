//! A chat request, parsed and checked once: every problem is a 400 that names the field.
//! Fields the gateway does not act on stay in the body and are forwarded untouched.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::settings::Settings;

/// Which API the request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1/chat/completions`
    OpenAi,
    /// `/api/chat…`: always streams; accepts the `prompt` shorthand.
    Browser,
}

/// The message roles a request may use.
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];
const MAX_MODEL_CHARS: usize = 256;

/// Per-request knobs of the mock model (DESIGN section 6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockOptions {
    pub tokens: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub tokens_per_sec: Option<u64>,
    pub fail_after: Option<u64>,
    pub stall_after: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// The body as it goes upstream: the client's fields, `model` filled in.
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client itself asked for `stream_options.include_usage`.
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub mock: MockOptions,
    /// Characters of message text, for a usage estimate when the upstream gives none.
    pub prompt_chars: usize,
}

impl ChatRequest {
    pub fn parse(bytes: &[u8], dialect: Dialect, settings: &Settings) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| not_json(bytes, &e))?;
        let Value::Object(mut body) = value else {
            return Err(ApiError::invalid("the body must be a JSON object", None));
        };

        if dialect == Dialect::Browser {
            if let Some(prompt) = body.remove("prompt") {
                if body.contains_key("messages") {
                    return Err(invalid(
                        "send either `prompt` or `messages`, not both",
                        "prompt",
                    ));
                }
                let Value::String(text) = prompt else {
                    return Err(invalid("`prompt` must be a string", "prompt"));
                };
                body.insert(
                    "messages".into(),
                    serde_json::json!([{ "role": "user", "content": text }]),
                );
            }
            // The browser API always streams; `stream` is not the client's to choose.
            body.insert("stream".into(), Value::Bool(true));
        }

        let prompt_chars = check_messages(body.get("messages"))?;
        let model = check_model(body.get("model"), settings)?;
        body.insert("model".into(), Value::String(model.clone()));

        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("`stream` must be true or false", "stream")),
        };
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(invalid(
                        "`stream_options.include_usage` must be true or false",
                        "stream_options.include_usage",
                    ));
                }
            },
            Some(_) => {
                return Err(invalid(
                    "`stream_options` must be an object",
                    "stream_options",
                ));
            }
        };
        let max_tokens = match (body.get("max_completion_tokens"), body.get("max_tokens")) {
            (Some(v), _) if !v.is_null() => Some(whole(v, "max_completion_tokens")?),
            (_, Some(v)) if !v.is_null() => Some(whole(v, "max_tokens")?),
            _ => None,
        };
        let mock = match body.remove("mock") {
            None | Some(Value::Null) => MockOptions::default(),
            Some(Value::Object(m)) => mock_options(&m)?,
            Some(_) => return Err(invalid("`mock` must be an object", "mock")),
        };
        if stream {
            // The upstream is always asked for usage (see `upstream_body`); `include_usage`
            // above keeps whether the client itself asked.
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        if !settings.is_mock() && mock != MockOptions::default() {
            tracing::debug!("ignoring `mock` options: not in mock mode");
        }
        Ok(ChatRequest {
            body,
            model,
            stream,
            include_usage,
            max_tokens,
            mock,
            prompt_chars,
        })
    }

    /// The body for the upstream. A streaming one always asks for usage, so the gateway can
    /// count tokens; the relay strips it again when the client did not ask.
    pub fn upstream_body(&self) -> Bytes {
        serde_json::to_vec(&self.body).map_or_else(|_| Bytes::new(), Bytes::from)
    }

    /// The messages, already checked to be an array of objects.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// Says why a body is not JSON. Bytes that are not UTF-8 are named as such (serde_json would
/// say "invalid unicode code point", which sends the reader looking in the wrong place);
/// this runs only on the error path, so valid bodies are scanned once.
fn not_json(bytes: &[u8], error: &serde_json::Error) -> ApiError {
    let message = match std::str::from_utf8(bytes) {
        Err(e) => format!(
            "the body is not valid UTF-8 (at byte {}), so it cannot be JSON",
            e.valid_up_to()
        ),
        Ok(_) => format!("the body is not valid JSON: {error}"),
    };
    ApiError::invalid(message, None)
}

fn invalid(message: &str, param: &str) -> ApiError {
    ApiError::invalid(message, Some(param.to_owned()))
}

/// Checks every message and returns how many characters of text they hold.
fn check_messages(messages: Option<&Value>) -> Result<usize, ApiError> {
    let messages = match messages {
        None | Some(Value::Null) => {
            return Err(invalid(
                "`messages` is required: a non-empty array of {role, content}",
                "messages",
            ));
        }
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(invalid("`messages` must not be empty", "messages"));
        }
        Some(Value::Array(m)) => m,
        Some(_) => return Err(invalid("`messages` must be an array", "messages")),
    };
    let mut chars = 0;
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}]{field}");
        let Value::Object(message) = message else {
            return Err(ApiError::invalid(
                format!("`{}` must be an object", at("")),
                at(""),
            ));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            None => {
                return Err(ApiError::invalid(
                    format!("`{}` is missing", at(".role")),
                    at(".role"),
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("`{}` must be a string", at(".role")),
                    at(".role"),
                ));
            }
        };
        if !ROLES.contains(&role) {
            return Err(ApiError::invalid(
                format!("`{}` must be one of {}", at(".role"), ROLES.join(", ")),
                at(".role"),
            ));
        }
        let calls_tools =
            message.contains_key("tool_calls") || message.contains_key("function_call");
        match message.get("content") {
            Some(Value::String(text)) => chars += text.len(),
            Some(Value::Array(parts)) => {
                chars += parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .map(str::len)
                    .sum::<usize>();
            }
            None | Some(Value::Null) if role == "assistant" && calls_tools => {}
            None => {
                return Err(ApiError::invalid(
                    format!("`{}` is missing", at(".content")),
                    at(".content"),
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    format!(
                        "`{}` must be a string or an array of content parts",
                        at(".content")
                    ),
                    at(".content"),
                ));
            }
        }
    }
    Ok(chars)
}

fn check_model(model: Option<&Value>, settings: &Settings) -> Result<String, ApiError> {
    let model = match model {
        None | Some(Value::Null) => return Ok(settings.default_model().to_owned()),
        Some(Value::String(m)) if m.is_empty() => return Ok(settings.default_model().to_owned()),
        Some(Value::String(m)) => m,
        Some(_) => return Err(invalid("`model` must be a string", "model")),
    };
    if model.chars().count() > MAX_MODEL_CHARS || model.chars().any(char::is_control) {
        return Err(invalid(
            "`model` must be at most 256 characters with no control characters",
            "model",
        ));
    }
    let allowed = &settings.allowed_models.0;
    if !allowed.is_empty() && !allowed.iter().any(|a| a == model) {
        return Err(ApiError::invalid(
            format!(
                "model {model:?} is not allowed here; allowed: {}",
                allowed.join(", ")
            ),
            Some("model".to_owned()),
        ));
    }
    Ok(model.clone())
}

fn whole(value: &Value, field: &str) -> Result<u64, ApiError> {
    value.as_u64().ok_or_else(|| {
        ApiError::invalid(
            format!("`{field}` must be a whole number"),
            Some(field.to_owned()),
        )
    })
}

fn mock_options(m: &Map<String, Value>) -> Result<MockOptions, ApiError> {
    let field = |name: &str| match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => whole(v, &format!("mock.{name}")).map(Some),
    };
    Ok(MockOptions {
        tokens: field("tokens")?,
        ttft_ms: field("ttft_ms")?,
        tokens_per_sec: field("tokens_per_sec")?,
        fail_after: field("fail_after")?,
        stall_after: field("stall_after")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_pairs(&[]).unwrap()
    }

    fn parse(body: &str, dialect: Dialect) -> Result<ChatRequest, String> {
        ChatRequest::parse(body.as_bytes(), dialect, &settings()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_prompt_shorthand_becomes_one_user_message() {
        let r = parse(r#"{"prompt":"hi"}"#, Dialect::Browser).unwrap();
        assert_eq!(r.messages().len(), 1);
        assert_eq!(r.messages()[0]["content"], "hi");
        assert!(r.stream);
        assert_eq!(r.model, "mock");
    }

    #[test]
    fn unknown_fields_are_forwarded_and_usage_is_requested() {
        let r = parse(
            r#"{"model":"gpt-x","stream":true,"messages":[{"role":"user","content":"a"}],"tools":[{"type":"function"}],"temperature":0.2,"vendor_extra":{"a":1}}"#,
            Dialect::OpenAi,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&r.upstream_body()).unwrap();
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["vendor_extra"]["a"], 1);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(!r.include_usage);
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            ("{}", "`messages` is required"),
            (r#"{"messages":[]}"#, "must not be empty"),
            (r#"{"messages":[{"content":"x"}]}"#, "messages[0].role"),
            (r#"{"messages":[{"role":"user"}]}"#, "messages[0].content"),
            (
                r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#,
                "`model`",
            ),
            (
                r#"{"stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
                "`stream`",
            ),
            (
                r#"{"max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
            (
                r#"{"mock":{"tokens":"x"},"messages":[{"role":"user","content":"x"}]}"#,
                "mock.tokens",
            ),
        ];
        for (body, needle) in cases {
            let err = parse(body, Dialect::OpenAi).unwrap_err();
            assert!(err.contains(needle), "{body} -> {err}");
        }
    }

    #[test]
    fn an_assistant_tool_call_needs_no_content() {
        let body = r#"{"messages":[{"role":"assistant","tool_calls":[]},{"role":"tool","content":"42","tool_call_id":"a"}]}"#;
        assert!(parse(body, Dialect::OpenAi).is_ok());
    }

    #[test]
    fn allowed_models_refuse_others() {
        let s = Settings::from_pairs(&[("ALLOWED_MODELS", "a, b")]).unwrap();
        let ok = ChatRequest::parse(br#"{"model":"b","prompt":"x"}"#, Dialect::Browser, &s);
        let bad = ChatRequest::parse(br#"{"model":"c","prompt":"x"}"#, Dialect::Browser, &s);
        assert!(ok.is_ok());
        assert!(bad.unwrap_err().to_string().contains("not allowed"));
    }

    #[test]
    fn control_characters_in_a_model_name_are_refused() {
        let err = parse(r#"{"model":"a\r\nb","prompt":"x"}"#, Dialect::Browser).unwrap_err();
        assert!(err.contains("control characters"));
    }
}
