//! Strategies for JSON: arbitrary trees whose keys lean toward the field names the gateway
//! looks at, so that random input reaches deep into validation instead of failing at once.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names the gateway reads, plus a few it forwards.
const KEYS: [&str; 18] = [
    "messages",
    "model",
    "role",
    "content",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "mock",
    "tokens",
    "prompt",
    "tool_calls",
    "text",
    "choices",
    "delta",
    "finish_reason",
    "usage",
];

pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&KEYS[..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Scalars, with the values the gateway treats specially (roles, empty strings, huge and
/// negative numbers) over-represented.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(&["user", "assistant", "system", "tool", "", "mock", "[DONE]"][..])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ]
}

/// Any JSON value, nested a few levels.
pub fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}
