//! Hold mode: open N streams (bounded parallel connects, one connection each), keep them open
//! for a while, and report how many opened, how many failed, and what the processes under test
//! spent in resident memory per open stream.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use streamgate_bench::{
    hist::{new_hist, record_us, summary},
    http1::Conn,
    procfs::{PidGroup, raise_nofile, rss_kib},
    sse::SseParser,
};
use tokio::{
    sync::{Semaphore, watch},
    time::{Instant, timeout},
};

use crate::client::{ErrKind, Target};

pub struct HoldOpts {
    pub streams: usize,
    pub connect_parallel: usize,
    pub open_timeout: Duration,
    pub ramp_timeout: Duration,
    pub hold: Duration,
    pub settle: Duration,
    pub pids: Vec<PidGroup>,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    failed: AtomicU64,
    resolved: AtomicU64,
    closed_early: AtomicU64,
    events: AtomicU64,
    comments: AtomicU64,
}

async fn one_stream(
    tgt: Target,
    sem: Arc<Semaphore>,
    c: Arc<Counters>,
    errs: Arc<Mutex<BTreeMap<String, u64>>>,
    open_hist: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    open_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let fail = |e: ErrKind| {
        if let Ok(mut m) = errs.lock() {
            *m.entry(e.key()).or_default() += 1;
        }
        c.failed.fetch_add(1, Ordering::Relaxed);
        c.resolved.fetch_add(1, Ordering::Relaxed);
    };
    let Ok(permit) = sem.acquire_owned().await else {
        return fail(ErrKind::Connect);
    };
    let t0 = Instant::now();
    let opened = timeout(open_timeout, async {
        let mut conn = Conn::connect(tgt.addr)
            .await
            .map_err(|_| ErrKind::Connect)?;
        let resp = conn.send(&tgt.request).await.map_err(|_| ErrKind::Io)?;
        if resp.status != 200 {
            return Err(ErrKind::Status(resp.status));
        }
        Ok((conn, resp))
    })
    .await;
    drop(permit);
    let (mut conn, mut resp) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return fail(e),
        Err(_) => return fail(ErrKind::Timeout),
    };
    if let Ok(mut h) = open_hist.lock() {
        record_us(&mut h, t0.elapsed());
    }
    c.opened.fetch_add(1, Ordering::Relaxed);
    c.resolved.fetch_add(1, Ordering::Relaxed);
    let mut parser = SseParser::new();
    let mut too_long = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = conn.body(&mut resp, |d, _| {
                let mut n = 0;
                match parser.feed(d, |_| n += 1) {
                    Ok(r) => {
                        c.comments.fetch_add(r.comments as u64, Ordering::Relaxed);
                        c.events.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(_) => too_long = true,
                }
            }) => {
                if !matches!(r, Ok(false)) || too_long {
                    c.closed_early.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    drop(conn);
}

fn rss_all(pids: &[PidGroup]) -> Vec<u64> {
    pids.iter().map(PidGroup::rss_kib).collect()
}

pub async fn hold(tgt: Target, o: HoldOpts) -> Value {
    let nofile = raise_nofile();
    let rss_before = rss_all(&o.pids);
    let me = std::process::id();
    let own_before = rss_kib(me).unwrap_or(0);
    let c = Arc::new(Counters::default());
    let errs = Arc::new(Mutex::new(BTreeMap::new()));
    let open_hist = Arc::new(Mutex::new(new_hist()));
    let sem = Arc::new(Semaphore::new(o.connect_parallel.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let n = o.streams;

    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(one_stream(
                tgt.clone(),
                sem.clone(),
                c.clone(),
                errs.clone(),
                open_hist.clone(),
                o.open_timeout,
                stop_rx.clone(),
            ))
        })
        .collect();

    // Ramp: wait until every stream opened or failed (bounded by --ramp-timeout-secs).
    let ramp_deadline = start + o.ramp_timeout;
    let mut interrupted = false;
    while (c.resolved.load(Ordering::Relaxed) as usize) < n && Instant::now() < ramp_deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
        }
    }
    let ramp = start.elapsed();
    let opened_at_ramp = c.opened.load(Ordering::Relaxed);
    eprintln!(
        "hold: {opened_at_ramp}/{n} streams open after {:.2}s ({} failed)",
        ramp.as_secs_f64(),
        c.failed.load(Ordering::Relaxed)
    );

    if !interrupted {
        tokio::time::sleep(o.settle).await;
    }
    let rss_held = rss_all(&o.pids);
    let own_held = rss_kib(me).unwrap_or(0);
    let open_when_measured =
        c.opened.load(Ordering::Relaxed) - c.closed_early.load(Ordering::Relaxed);

    // Hold for the duration, or until Ctrl-C / SIGTERM.
    if !interrupted {
        let until = Instant::now() + o.hold;
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match sigterm.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    let opened = c.opened.load(Ordering::Relaxed);
    let closed_early = c.closed_early.load(Ordering::Relaxed);
    let still_open = opened - closed_early;
    let held_secs = start.elapsed().as_secs_f64() - ramp.as_secs_f64();

    let _ = stop_tx.send(true);
    let join = async {
        for h in handles {
            let _ = h.await;
        }
    };
    let _ = timeout(Duration::from_secs(30), join).await;
    tokio::time::sleep(o.settle).await;
    let rss_closed = rss_all(&o.pids);

    let mut rss = serde_json::Map::new();
    for (i, g) in o.pids.iter().enumerate() {
        let per = if open_when_measured > 0 {
            (rss_held[i] as f64 - rss_before[i] as f64) / open_when_measured as f64
        } else {
            0.0
        };
        rss.insert(
            g.name.clone(),
            json!({
                "before": rss_before[i],
                "held": rss_held[i],
                "after_close": rss_closed[i],
                "per_stream_kib": (per * 100.0).round() / 100.0,
            }),
        );
    }
    let open_summary = open_hist.lock().map(|h| summary(&h)).unwrap_or(Value::Null);
    let errors = errs.lock().map(|m| m.clone()).unwrap_or_default();
    json!({
        "mode": "hold",
        "streams": n,
        "opened": opened,
        "failed": c.failed.load(Ordering::Relaxed),
        "closed_early": closed_early,
        "still_open_at_end": still_open,
        "open_when_measured": open_when_measured,
        "error_kinds": errors,
        "ramp_secs": (ramp.as_secs_f64() * 1000.0).round() / 1000.0,
        "held_secs": (held_secs * 100.0).round() / 100.0,
        "open_latency_us": open_summary,
        "events_received": c.events.load(Ordering::Relaxed),
        "comments_received": c.comments.load(Ordering::Relaxed),
        "rss_kib": Value::Object(rss),
        "loadgen_rss_kib": {"before": own_before, "held": own_held},
        "nofile": {"soft": nofile.0, "hard": nofile.1},
        "interrupted": interrupted,
    })
}
