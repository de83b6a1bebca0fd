//! `ChatRequest::parse`: any bytes give a request or a 400, never a panic; a well-formed
//! request keeps every field on its way upstream.

use std::sync::LazyLock;

use actix_web::ResponseError;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use streamgate::error::ApiError;
use streamgate::request::{ChatRequest, Dialect};
use streamgate::settings::Settings;

use streamgate::request::ROLES;

use crate::json;

static SETTINGS: LazyLock<Settings> = LazyLock::new(|| Settings::from_pairs(&[]).unwrap());

/// Parses in both dialects; a refusal must be a 400 with a message.
fn parse_both(bytes: &[u8]) -> Result<(), TestCaseError> {
    for dialect in [Dialect::OpenAi, Dialect::Browser] {
        if let Err(error) = ChatRequest::parse(bytes, dialect, &SETTINGS) {
            prop_assert!(
                matches!(error, ApiError::InvalidRequest { .. }),
                "{error:?}"
            );
            prop_assert_eq!(error.status_code().as_u16(), 400);
            prop_assert!(!error.to_string().is_empty());
        }
    }
    Ok(())
}

fn message() -> impl Strategy<Value = Value> {
    let text = any::<String>();
    let content = prop_oneof![
        any::<String>().prop_map(Value::String),
        prop::collection::vec(text, 0..3).prop_map(|parts| {
            parts
                .into_iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect()
        }),
    ];
    (prop::sample::select(&ROLES[..]), content)
        .prop_map(|(role, content)| json!({"role": role, "content": content}))
}

/// A model name the gateway must accept: 1 to 256 characters, none of them control ones.
fn model_name() -> impl Strategy<Value = String> {
    // Mapped rather than filtered: a filter's rejections add up over 20,000 cases.
    let visible = any::<char>().prop_map(|c| if c.is_control() { '?' } else { c });
    prop::collection::vec(visible, 1..=256).prop_map(String::from_iter)
}

/// Fields the gateway does not act on: forwarded as they are.
fn extras() -> impl Strategy<Value = Map<String, Value>> {
    let name = prop::sample::select(
        &[
            "temperature",
            "top_p",
            "seed",
            "user",
            "tools",
            "tool_choice",
            "response_format",
            "vendor_extra",
        ][..],
    );
    prop::collection::vec((name, json::value()), 0..4)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[derive(Debug, Clone)]
struct WellFormed {
    body: Map<String, Value>,
    model: Option<String>,
    stream: Option<bool>,
    include_usage: Option<bool>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

fn well_formed() -> impl Strategy<Value = WellFormed> {
    (
        prop::collection::vec(message(), 1..6),
        prop::option::of(model_name()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        extras(),
    )
        .prop_map(
            |(
                messages,
                model,
                stream,
                include_usage,
                max_tokens,
                max_completion_tokens,
                extras,
            )| {
                let mut body = extras;
                body.insert("messages".into(), Value::Array(messages));
                if let Some(model) = &model {
                    body.insert("model".into(), json!(model));
                }
                if let Some(stream) = stream {
                    body.insert("stream".into(), json!(stream));
                }
                if let Some(include) = include_usage {
                    body.insert("stream_options".into(), json!({"include_usage": include}));
                }
                if let Some(n) = max_tokens {
                    body.insert("max_tokens".into(), json!(n));
                }
                if let Some(n) = max_completion_tokens {
                    body.insert("max_completion_tokens".into(), json!(n));
                }
                WellFormed {
                    body,
                    model,
                    stream,
                    include_usage,
                    max_tokens,
                    max_completion_tokens,
                }
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_both(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics_the_parser(value in json::value()) {
        parse_both(value.to_string().as_bytes())?;
    }

    #[test]
    fn arbitrary_messages_never_panic_the_parser(
        messages in prop::collection::vec(json::value(), 0..6),
        top in prop::collection::vec((json::key(), json::value()), 0..4),
    ) {
        let mut body: Map<String, Value> = top.into_iter().collect();
        body.insert("messages".into(), Value::Array(messages));
        parse_both(Value::Object(body).to_string().as_bytes())?;
    }

    #[test]
    fn a_well_formed_request_keeps_every_field_on_its_way_upstream(request in well_formed()) {
        let bytes = serde_json::to_vec(&request.body).unwrap();
        let parsed = ChatRequest::parse(&bytes, Dialect::OpenAi, &SETTINGS).unwrap();
        let stream = request.stream.unwrap_or(false);
        prop_assert_eq!(&parsed.model, request.model.as_deref().unwrap_or("mock"));
        prop_assert_eq!(parsed.stream, stream);
        prop_assert_eq!(parsed.include_usage, request.include_usage.unwrap_or(false));
        prop_assert_eq!(parsed.max_tokens, request.max_completion_tokens.or(request.max_tokens));
        prop_assert_eq!(parsed.messages(), request.body["messages"].as_array().unwrap().as_slice());

        // Upstream gets the client's body, as the client sent it (numbers included), with
        // the model filled in and, when streaming, usage asked for.
        let mut expected: Value = serde_json::from_slice(&bytes).unwrap();
        expected["model"] = json!(parsed.model);
        if stream {
            expected["stream_options"]["include_usage"] = json!(true);
        }
        let upstream: Value = serde_json::from_slice(&parsed.upstream_body()).unwrap();
        prop_assert_eq!(upstream, expected);
    }

    #[test]
    fn the_browser_prompt_shorthand_becomes_one_user_message(prompt in any::<String>()) {
        let bytes = serde_json::to_vec(&json!({"prompt": prompt})).unwrap();
        let parsed = ChatRequest::parse(&bytes, Dialect::Browser, &SETTINGS).unwrap();
        prop_assert!(parsed.stream);
        prop_assert_eq!(parsed.messages(), &[json!({"role": "user", "content": prompt})][..]);
    }
}
