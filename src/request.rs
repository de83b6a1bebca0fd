//! A chat request, parsed and checked once: every problem is a 400 that names the field.
//! Fields the gateway does not act on stay in the body and are forwarded untouched.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;

use crate::error::ApiError;
use crate::settings::Settings;

mod members;

use members::{Members, decoded_len, elements, is_null, json_string, objects, string};

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
    /// The body as it goes upstream: the client's members as the client wrote them, `model`
    /// filled in, `mock` taken out, usage asked for when streaming.
    upstream: Bytes,
    /// Where `messages` is in `upstream`.
    messages: Range<usize>,
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
        let mut body = Members::parse(bytes).map_err(|e| match e.classify() {
            // Valid JSON, but not an object: the only data error reading members can give.
            serde_json::error::Category::Data => {
                ApiError::invalid("the body must be a JSON object", None)
            }
            _ => not_json(bytes, &e),
        })?;

        if dialect == Dialect::Browser {
            if let Some(prompt) = body.remove("prompt") {
                if body.contains("messages") {
                    return Err(invalid(
                        "send either `prompt` or `messages`, not both",
                        "prompt",
                    ));
                }
                let Some(text) = string(&prompt) else {
                    return Err(invalid("`prompt` must be a string", "prompt"));
                };
                let messages = format!(r#"[{{"role":"user","content":{}}}]"#, json_string(&text));
                body.set("messages", Cow::Owned(messages));
            }
            // The browser API always streams; `stream` is not the client's to choose.
            body.set("stream", Cow::Borrowed("true"));
        }

        let prompt_chars = check_messages(body.get("messages"))?;
        let model = check_model(body.get("model"), settings)?;
        if model.is_empty() {
            // Upstream mode with no UPSTREAM_MODEL and no model in the request: servers that
            // host one model (vLLM, llama.cpp) pick it when `model` is absent, but refuse "".
            body.remove("model");
        } else {
            body.set("model", Cow::Owned(json_string(&model)));
        }

        let mock = match body.remove("mock").filter(|m| !is_null(m)) {
            None => MockOptions::default(),
            Some(m) => match Members::parse(m.as_bytes()) {
                Ok(m) => mock_options(&m)?,
                Err(_) => return Err(invalid("`mock` must be an object", "mock")),
            },
        };
        let stream = match body.get("stream") {
            None => false,
            Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(invalid("`stream` must be true or false", "stream")),
        };
        let mut stream_options = match body.get("stream_options") {
            None => Members::default(),
            Some(options) => Members::parse(options.as_bytes())
                .map_err(|_| invalid("`stream_options` must be an object", "stream_options"))?,
        };
        let include_usage = match stream_options.get("include_usage") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(invalid(
                    "`stream_options.include_usage` must be true or false",
                    "stream_options.include_usage",
                ));
            }
        };
        let max_tokens = match (body.get("max_completion_tokens"), body.get("max_tokens")) {
            (Some(v), _) => Some(whole(v, "max_completion_tokens")?),
            (_, Some(v)) => Some(whole(v, "max_tokens")?),
            _ => None,
        };
        if stream && !include_usage {
            // The upstream is always asked for usage (see `upstream_body`); `include_usage`
            // above keeps whether the client itself asked.
            stream_options.set("include_usage", Cow::Borrowed("true"));
            body.set("stream_options", Cow::Owned(stream_options.to_json()));
        }
        if !settings.is_mock() && mock != MockOptions::default() {
            tracing::debug!("ignoring `mock` options: not in mock mode");
        }

        let mut upstream = Vec::with_capacity(bytes.len() + 64);
        let mut messages = 0..0;
        body.write(&mut upstream, |key, start, end| {
            if key == "messages" {
                messages = start..end;
            }
        });
        Ok(ChatRequest {
            upstream: Bytes::from(upstream),
            messages,
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
        self.upstream.clone()
    }

    /// The messages, already checked to be an array of objects, as JSON values. serde_json
    /// stops at 128 levels: a message with a member nested deeper reads as no messages.
    pub fn messages(&self) -> Vec<Value> {
        serde_json::from_slice(&self.upstream[self.messages.clone()]).unwrap_or_default()
    }

    /// What the mock model reads of the messages: each one's role and text (its `content`
    /// string, or the `text` of its content parts joined by spaces). Read member by member,
    /// without recursion, so that a member nested deeper than serde_json's 128 levels, which
    /// the checks let through, does not hide the prompt.
    pub fn prompt(&self) -> Vec<PromptMessage> {
        let all = std::str::from_utf8(&self.upstream[self.messages.clone()]).unwrap_or("[]");
        elements(all)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| Members::parse(m.as_bytes()).ok())
            .map(|m| PromptMessage {
                role: m
                    .get("role")
                    .and_then(string)
                    .unwrap_or_default()
                    .into_owned(),
                text: m.get("content").map(content_text).unwrap_or_default(),
            })
            .collect()
    }
}

/// One message as the mock model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    pub role: String,
    pub text: String,
}

/// A message's text: its `content` string, or the `text` of each content part, joined by
/// spaces.
fn content_text(content: &str) -> String {
    if let Some(text) = string(content) {
        return text.into_owned();
    }
    let mut texts = Vec::new();
    each_part_text(content, |text| texts.push(text.to_owned()));
    texts.join(" ")
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
fn check_messages(messages: Option<&str>) -> Result<usize, ApiError> {
    let Some(messages) = messages else {
        return Err(invalid(
            "`messages` is required: a non-empty array of {role, content}",
            "messages",
        ));
    };
    // Read in one pass when every message is an object the scanner takes; else element by
    // element, so that the refusal names the message.
    let messages: Vec<Option<Members>> = match objects(messages) {
        Some(all) => all.into_iter().map(Some).collect(),
        None => {
            let Some(elements) = elements(messages) else {
                return Err(invalid("`messages` must be an array", "messages"));
            };
            elements
                .into_iter()
                .map(|m| Members::parse(m.as_bytes()).ok())
                .collect()
        }
    };
    if messages.is_empty() {
        return Err(invalid("`messages` must not be empty", "messages"));
    }
    let mut chars = 0;
    for (i, message) in messages.into_iter().enumerate() {
        let at = |field: &str| format!("messages[{i}]{field}");
        let Some(message) = message else {
            return Err(ApiError::invalid(
                format!("`{}` must be an object", at("")),
                at(""),
            ));
        };
        let role = match message.raw("role") {
            Some(role) => string(role),
            None => {
                return Err(ApiError::invalid(
                    format!("`{}` is missing", at(".role")),
                    at(".role"),
                ));
            }
        };
        let Some(role) = role else {
            return Err(ApiError::invalid(
                format!("`{}` must be a string", at(".role")),
                at(".role"),
            ));
        };
        if !ROLES.contains(&role.as_ref()) {
            return Err(ApiError::invalid(
                format!("`{}` must be one of {}", at(".role"), ROLES.join(", ")),
                at(".role"),
            ));
        }
        let calls_tools = message.contains("tool_calls") || message.contains("function_call");
        match message.raw("content") {
            Some(text) if text.starts_with('"') => match decoded_len(text) {
                Ok(len) => chars += len,
                Err(e) => {
                    return Err(ApiError::invalid(
                        format!("`{}` is not a valid string: {e}", at(".content")),
                        at(".content"),
                    ));
                }
            },
            Some(parts) if parts.starts_with('[') => chars += text_parts(parts),
            None | Some("null") if role == "assistant" && calls_tools => {}
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

/// Characters of text in an array of content parts: the `text` of each part that has one.
fn text_parts(parts: &str) -> usize {
    let mut chars = 0;
    each_part_text(parts, |text| chars += text.len());
    chars
}

/// Calls `f` with the `text` of each content part that has one, in order.
fn each_part_text(parts: &str, mut f: impl FnMut(&str)) {
    for part in elements(parts).unwrap_or_default() {
        if let Ok(part) = Members::parse(part.as_bytes())
            && let Some(text) = part.get("text").and_then(string)
        {
            f(&text);
        }
    }
}

fn check_model(model: Option<&str>, settings: &Settings) -> Result<String, ApiError> {
    let Some(model) = model else {
        return Ok(settings.default_model().to_owned());
    };
    let Some(model) = string(model) else {
        return Err(invalid("`model` must be a string", "model"));
    };
    if model.is_empty() {
        return Ok(settings.default_model().to_owned());
    }
    if model.chars().count() > MAX_MODEL_CHARS || model.chars().any(char::is_control) {
        return Err(invalid(
            "`model` must be at most 256 characters with no control characters",
            "model",
        ));
    }
    let allowed = &settings.allowed_models.0;
    if !allowed.is_empty() && !allowed.iter().any(|a| *a == model) {
        return Err(ApiError::invalid(
            format!(
                "model {model:?} is not allowed here; allowed: {}",
                allowed.join(", ")
            ),
            Some("model".to_owned()),
        ));
    }
    Ok(model.into_owned())
}

/// A JSON number that is a whole number a u64 holds, as `Value::as_u64` reads it.
fn whole(json: &str, field: &str) -> Result<u64, ApiError> {
    serde_json::from_str::<u64>(json).map_err(|_| {
        ApiError::invalid(
            format!("`{field}` must be a whole number"),
            Some(field.to_owned()),
        )
    })
}

fn mock_options(m: &Members) -> Result<MockOptions, ApiError> {
    let field = |name: &str| match m.get(name) {
        None => Ok(None),
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
    fn the_prompt_is_read_past_a_member_nested_deeper_than_serde_json_goes() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let body = format!(
            r#"{{"messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":[{{"type":"text","text":"hello"}},{{"type":"image_url","x":{deep}}},{{"type":"text","text":"there"}}],"extra":{deep}}}]}}"#
        );
        let r = parse(&body, Dialect::OpenAi).unwrap();
        assert!(r.messages().is_empty(), "serde_json stops at 128 levels");
        let prompt = r.prompt();
        assert_eq!(prompt.len(), 2);
        assert_eq!(prompt[0].role, "system");
        assert_eq!(prompt[0].text, "be brief");
        assert_eq!(prompt[1].role, "user");
        assert_eq!(prompt[1].text, "hello there");
    }

    #[test]
    fn no_model_anywhere_leaves_model_out_of_the_upstream_body() {
        let s = Settings::from_pairs(&[("UPSTREAM_BASE_URL", "http://127.0.0.1:1/v1")]).unwrap();
        for body in [
            r#"{"messages":[{"role":"user","content":"a"}]}"#,
            r#"{"model":"","messages":[{"role":"user","content":"a"}]}"#,
        ] {
            let r = ChatRequest::parse(body.as_bytes(), Dialect::OpenAi, &s).unwrap();
            let sent: Value = serde_json::from_slice(&r.upstream_body()).unwrap();
            assert_eq!(sent.get("model"), None, "{body}");
        }
        let r = ChatRequest::parse(br#"{"model":"m1","prompt":"a"}"#, Dialect::Browser, &s);
        let sent: Value = serde_json::from_slice(&r.unwrap().upstream_body()).unwrap();
        assert_eq!(sent["model"], "m1");
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
