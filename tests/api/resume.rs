//! Resumable streams: the EventSource flow, Last-Event-ID replay, fan-out, 204/404, DELETE,
//! expiry and the stream cap.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::support::upstream::{MockUpstream, Script, Step, content_chunk, sse_head};
use crate::support::{SseReader, TestApp, browser_text, data, event_name, frames, spawn_app};

/// POSTs a prompt to the EventSource flow; returns the stream URL.
async fn create(app: &TestApp, body: Value) -> String {
    let response = app.post("/api/chat/messages", &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["stream_url"], format!("/api/chat/streams/{id}"));
    assert!(created["expires_at"].as_u64().unwrap() > 1_700_000_000);
    created["stream_url"].as_str().unwrap().to_owned()
}

async fn read_after(app: &TestApp, url: &str, after: Option<u64>) -> reqwest::Response {
    let mut request = app.client.get(app.url(url));
    if let Some(n) = after {
        request = request.header("Last-Event-ID", n.to_string());
    }
    request.send().await.unwrap()
}

#[actix_web::test]
async fn a_replay_from_every_position_gives_exactly_the_rest_then_204_at_the_end() {
    let app = spawn_app(&[]).await;
    let url = create(&app, json!({"prompt": "replay me", "mock": {"tokens": 8}})).await;
    let full = frames(read_after(&app, &url, None).await).await;
    assert_eq!(full[0], "retry: 2000");
    let events = &full[1..];
    assert_eq!(events.len(), 9, "8 deltas and stop");
    for n in 0..events.len() as u64 {
        let got = frames(read_after(&app, &url, Some(n)).await).await;
        assert_eq!(&got[1..], &events[n as usize..], "after event {n}");
    }
    let past_end = read_after(&app, &url, Some(events.len() as u64)).await;
    assert_eq!(
        past_end.status(),
        204,
        "EventSource stops reconnecting on 204"
    );
    let by_query = frames(app.get(&format!("{url}?last_event_id=7")).await).await;
    assert_eq!(&by_query[1..], &events[7..]);
}

#[actix_web::test]
async fn a_reader_that_reconnects_mid_stream_misses_and_repeats_nothing() {
    let app = spawn_app(&[]).await;
    let body = json!({"prompt": "resume", "mock": {"tokens": 30, "tokens_per_sec": 100}});
    let url = create(&app, body).await;
    let mut first = SseReader::new(read_after(&app, &url, None).await);
    let mut seen = vec![first.next_frame().await.unwrap()];
    for _ in 0..5 {
        seen.push(first.next_frame().await.unwrap());
    }
    drop(first);
    let last_id: u64 = seen
        .last()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .strip_prefix("id: ")
        .unwrap()
        .parse()
        .unwrap();
    let rest = frames(read_after(&app, &url, Some(last_id)).await).await;
    seen.extend(rest.into_iter().skip(1));
    let whole = frames(read_after(&app, &url, None).await).await;
    assert_eq!(browser_text(&seen), browser_text(&whole));
    assert_eq!(
        seen.iter()
            .filter(|f| event_name(f) == Some("stop"))
            .count(),
        1
    );
    let ids: Vec<u64> = seen[1..]
        .iter()
        .map(|f| f.lines().next().unwrap()[4..].parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "every id once, in order"
    );
}

#[actix_web::test]
async fn several_readers_each_get_every_event_once_in_order() {
    let app = spawn_app(&[]).await;
    let url = create(
        &app,
        json!({"prompt": "fan out", "mock": {"tokens": 20, "tokens_per_sec": 200}}),
    )
    .await;
    let readers = (0..4).map(|_| async { frames(read_after(&app, &url, None).await).await });
    let all = join_all(readers).await;
    for got in &all[1..] {
        assert_eq!(got, &all[0]);
    }
    assert_eq!(all[0].len(), 22);
}

#[actix_web::test]
async fn a_reader_that_never_reads_does_not_hold_up_the_generation() {
    let app = spawn_app(&[]).await;
    // Far more than socket buffers hold: a blocking design would stall here.
    let url = create(&app, json!({"prompt": "big", "mock": {"tokens": 100_000}})).await;
    let stalled = read_after(&app, &url, None).await;
    let id = url.rsplit('/').next().unwrap();
    let entry = app.shared.registry.get(id).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(30), entry.wait_finished()).await;
    assert!(finished.is_ok(), "the generation waited for its reader");
    let got = frames(stalled).await;
    assert_eq!(
        got.len(),
        100_002,
        "and the slow reader still gets every event"
    );
}

#[actix_web::test]
async fn an_unknown_id_is_404_and_a_finished_stream_expires_after_its_ttl() {
    let app = spawn_app(&[("STREAM_TTL_SECS", "1")]).await;
    let unknown = app
        .get("/api/chat/streams/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let url = create(&app, json!({"prompt": "short", "mock": {"tokens": 2}})).await;
    frames(read_after(&app, &url, None).await).await;
    assert_eq!(app.shared.registry.len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.get(&url).await.status();
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "still there after its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.shared.registry.is_empty(), "its memory is released");
}

#[actix_web::test]
async fn delete_cancels_the_upstream_and_readers_get_a_cancelled_stop() {
    let mut steps = vec![sse_head()];
    for _ in 0..200 {
        steps.push(Step::Data(content_chunk("t")));
        steps.push(Step::Sleep(Duration::from_millis(50)));
    }
    let upstream = MockUpstream::start(vec![Script(steps)]).await;
    let app = spawn_app(&[("UPSTREAM_BASE_URL", &upstream.base_url)]).await;
    let url = create(&app, json!({"prompt": "stop me"})).await;
    let mut reader = SseReader::new(read_after(&app, &url, None).await);
    reader.next_frame().await.unwrap();
    reader.next_frame().await.unwrap();
    let deleted = app.client.delete(app.url(&url)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let rest = reader.all().await;
    let stop = rest.last().unwrap();
    assert_eq!(event_name(stop), Some("stop"));
    assert_eq!(data(stop)["finish_reason"], "cancelled");
    assert!(
        upstream.wait_for_drop(Duration::from_secs(5)).await,
        "the upstream request was dropped"
    );
    assert_eq!(app.shared.limits.active(), 0);
    let again = app
        .client
        .delete(app.url("/api/chat/streams/ffffffffffffffffffffffffffffffff"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[actix_web::test]
async fn a_bad_last_event_id_is_a_400_that_says_so() {
    let app = spawn_app(&[]).await;
    let url = create(&app, json!({"prompt": "x", "mock": {"tokens": 1}})).await;
    let response = app
        .client
        .get(app.url(&url))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID")
    );
}

#[actix_web::test]
async fn max_streams_caps_live_generations() {
    let app = spawn_app(&[("MAX_STREAMS", "2")]).await;
    let slow = json!({"prompt": "x", "mock": {"tokens": 1000, "tokens_per_sec": 10}});
    let a = create(&app, slow.clone()).await;
    let _b = create(&app, slow.clone()).await;
    let refused = app.post("/api/chat/messages", &slow).await;
    assert_eq!(refused.status(), 503);
    app.client.delete(app.url(&a)).send().await.unwrap();
    // The slot frees once the cancelled generation has ended.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.shared.limits.active() > 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.post("/api/chat/messages", &slow).await.status(), 201);
}

#[actix_web::test]
async fn many_concurrent_creates_and_reads_all_complete_intact() {
    let app = spawn_app(&[("MAX_STREAMS_PER_CLIENT", "1000")]).await;
    let expected = {
        let url = create(
            &app,
            json!({"prompt": "same prompt", "mock": {"tokens": 40}}),
        )
        .await;
        browser_text(&frames(read_after(&app, &url, None).await).await)
    };
    let runs = (0..200).map(|i| {
        let app = &app;
        async move {
            let url = create(
                app,
                json!({"prompt": "same prompt", "mock": {"tokens": 40, "tokens_per_sec": 400}}),
            )
            .await;
            let after = if i % 2 == 0 { None } else { Some(3) };
            frames(read_after(app, &url, after).await).await
        }
    });
    for (i, got) in join_all(runs).await.into_iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(browser_text(&got), expected);
        }
        assert_eq!(data(got.last().unwrap())["finish_reason"], "stop");
    }
}

#[actix_web::test]
async fn an_expired_stream_frees_everything_it_held() {
    let app = spawn_app(&[("STREAM_TTL_SECS", "1")]).await;
    let url = create(&app, json!({"prompt": "free me", "mock": {"tokens": 50}})).await;
    frames(read_after(&app, &url, None).await).await;
    frames(read_after(&app, &url, Some(10)).await).await;
    let id = url.rsplit('/').next().unwrap();
    let weak = std::sync::Arc::downgrade(&app.shared.registry.get(id).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while weak.upgrade().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "something still holds the expired stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
