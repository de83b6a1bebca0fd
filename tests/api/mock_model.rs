//! The built-in mock model, and one streamgate used as another's upstream.

use serde_json::{Value, json};

use crate::support::{browser_text, data, event_name, frames, openai_text, spawn_app};

#[actix_web::test]
async fn the_same_prompt_gives_the_same_answer_and_any_model_is_echoed() {
    let app = spawn_app(&[]).await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "tell me"}], "mock": {"tokens": 20}});
    let a = frames(app.post("/v1/chat/completions", &body).await).await;
    let b = frames(app.post("/v1/chat/completions", &body).await).await;
    assert_eq!(openai_text(&a), openai_text(&b));
    assert!(openai_text(&a).starts_with("You asked about tell me."));
    let first: Value = serde_json::from_str(a[0].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["object"], "chat.completion.chunk");
}

#[actix_web::test]
async fn the_mock_counts_usage_for_real() {
    let app = spawn_app(&[]).await;
    let body =
        json!({"messages": [{"role": "user", "content": "one two three"}], "mock": {"tokens": 7}});
    let answer: Value = app
        .post("/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 7, "total_tokens": 13})
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
}

#[actix_web::test]
async fn fail_after_and_stall_after_behave_like_a_failing_upstream() {
    let app = spawn_app(&[("UPSTREAM_IDLE_TIMEOUT_SECS", "1")]).await;
    let got = frames(
        app.post(
            "/api/chat",
            &json!({"prompt": "x", "mock": {"fail_after": 2}}),
        )
        .await,
    )
    .await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(event_name(&got[3]), Some("error"));
    assert_eq!(data(&got[4])["finish_reason"], "error");

    let got = frames(
        app.post(
            "/api/chat",
            &json!({"prompt": "x", "mock": {"stall_after": 1}}),
        )
        .await,
    )
    .await;
    assert_eq!(data(got.last().unwrap())["finish_reason"], "timeout");

    let refused = app
        .post(
            "/api/chat",
            &json!({"prompt": "x", "mock": {"fail_after": 0}}),
        )
        .await;
    assert_eq!(refused.status(), 502);
}

#[actix_web::test]
async fn models_lists_mock() {
    let app = spawn_app(&[]).await;
    let list: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "mock");
}

#[actix_web::test]
async fn one_streamgate_is_a_faithful_upstream_for_another() {
    let first = spawn_app(&[]).await;
    let upstream_url = first.url("/v1");
    let second = spawn_app(&[("UPSTREAM_BASE_URL", &upstream_url)]).await;
    let body = json!({"prompt": "chained gateways", "mock": {"tokens": 12}});
    let direct = frames(first.post("/api/chat", &body).await).await;
    // `mock` is not forwarded by a gateway in upstream mode, so ask the chained one for the
    // same length through max_tokens.
    let chained = frames(
        second
            .post(
                "/api/chat",
                &json!({"prompt": "chained gateways", "max_tokens": 12}),
            )
            .await,
    )
    .await;
    assert_eq!(browser_text(&chained), browser_text(&direct));
    let stop = data(chained.last().unwrap());
    assert_eq!(stop["finish_reason"], "length");
    assert!(
        stop["usage"].get("estimated").is_none(),
        "the first gateway's usage came through: {stop}"
    );

    let openai = frames(second.post("/v1/chat/completions", &json!({"stream": true, "messages": [{"role": "user", "content": "chained gateways"}], "max_tokens": 12})).await).await;
    assert_eq!(openai_text(&openai), browser_text(&direct));
    assert_eq!(openai.last().unwrap(), "data: [DONE]");
}
