//! Closed loop: C workers, each with its own keep-alive connection, issue one streaming request
//! after another for a duration (after a warm-up) or a total request count.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use streamgate_bench::{
    hist::{new_hist, record_us, summary},
    http1::Conn,
    procfs::{PidGroup, clk_tck, cpu_snapshot},
};
use tokio::time::{Instant, timeout};

use crate::client::{ErrKind, Target, execute};

pub struct RunOpts {
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub warmup: Duration,
    pub req_timeout: Duration,
    pub connect_timeout: Duration,
    pub pids: Vec<PidGroup>,
    /// Where to write each measured request's start and time to first token.
    pub trace_out: Option<PathBuf>,
}

struct Shared {
    tgt: Target,
    measure_from: Instant,
    deadline: Option<Instant>,
    requests: Option<u64>,
    issued: AtomicU64,
    stop: AtomicBool,
    req_timeout: Duration,
    connect_timeout: Duration,
    trace: bool,
}

struct WorkerStats {
    headers: Histogram<u64>,
    ttft: Histogram<u64>,
    gaps: Histogram<u64>,
    total: Histogram<u64>,
    /// Successful requests issued inside the window (their latencies are recorded).
    ok: u64,
    /// Successful requests that completed inside the window (for req/s).
    completed_in_window: u64,
    errors: BTreeMap<String, u64>,
    warmup_errors: u64,
    connects: u64,
    last_done: Option<Instant>,
    /// (start µs after the window opened, TTFT µs) of each measured request, with --trace-out.
    trace: Vec<(u64, u64)>,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            headers: new_hist(),
            ttft: new_hist(),
            gaps: new_hist(),
            total: new_hist(),
            ok: 0,
            completed_in_window: 0,
            errors: BTreeMap::new(),
            warmup_errors: 0,
            connects: 0,
            last_done: None,
            trace: Vec::new(),
        }
    }

    fn merge(&mut self, o: WorkerStats) {
        // Same bounds everywhere: add cannot fail.
        let _ = self.headers.add(&o.headers);
        let _ = self.ttft.add(&o.ttft);
        let _ = self.gaps.add(&o.gaps);
        let _ = self.total.add(&o.total);
        self.ok += o.ok;
        self.completed_in_window += o.completed_in_window;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.warmup_errors += o.warmup_errors;
        self.connects += o.connects;
        self.last_done = self.last_done.max(o.last_done);
        self.trace.extend(o.trace);
    }
}

async fn worker(sh: Arc<Shared>) -> WorkerStats {
    let mut st = WorkerStats::new();
    let mut conn: Option<Conn> = None;
    loop {
        let t0 = Instant::now();
        if sh.stop.load(Ordering::Relaxed) || sh.deadline.is_some_and(|d| t0 >= d) {
            break;
        }
        if let Some(n) = sh.requests
            && sh.issued.fetch_add(1, Ordering::Relaxed) >= n
        {
            break;
        }
        let in_window = t0 >= sh.measure_from;
        let mut c = match conn.take() {
            Some(c) if c.reusable() => c,
            _ => {
                st.connects += 1;
                match timeout(sh.connect_timeout, Conn::connect(sh.tgt.addr)).await {
                    Ok(Ok(c)) => c,
                    _ => {
                        count_err(&mut st, in_window, ErrKind::Connect);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
        };
        let gaps = if in_window { Some(&mut st.gaps) } else { None };
        let res = timeout(sh.req_timeout, execute(&mut c, &sh.tgt, t0, gaps)).await;
        let done = Instant::now();
        match res {
            Ok(Ok(t)) => {
                if in_window {
                    record_us(&mut st.headers, t.headers);
                    record_us(&mut st.ttft, t.ttft);
                    if sh.trace {
                        let start = t0.saturating_duration_since(sh.measure_from);
                        st.trace.push((micros(start), micros(t.ttft)));
                    }
                    record_us(&mut st.total, t.total);
                    st.ok += 1;
                }
                if done >= sh.measure_from && sh.deadline.is_none_or(|d| done <= d) {
                    st.completed_in_window += 1;
                }
                st.last_done = Some(done);
                conn = Some(c);
            }
            Ok(Err(e)) => {
                let pause = matches!(e, ErrKind::Status(_));
                count_err(&mut st, in_window, e);
                if pause {
                    // A refusing server (429/503) must not turn the loop into a busy spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(_) => count_err(&mut st, in_window, ErrKind::Timeout),
        }
    }
    st
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn count_err(st: &mut WorkerStats, in_window: bool, e: ErrKind) {
    if in_window {
        *st.errors.entry(e.key()).or_default() += 1;
    } else {
        st.warmup_errors += 1;
    }
}

fn cpu_json(
    before: &[(String, u64)],
    after: &[(String, u64)],
    window: f64,
    completed: u64,
) -> Value {
    let tck = clk_tck() as f64;
    let mut m = serde_json::Map::new();
    // Everything busy on the machine that is none of the measured processes: other work, and
    // kernel time not charged to a process. A noise indicator for the row.
    let delta = |i: usize| after[i].1.saturating_sub(before[i].1);
    if let Some(machine) = before.len().checked_sub(1) {
        let ours: u64 = (0..machine).map(delta).sum();
        let other = delta(machine).saturating_sub(ours) as f64 / tck;
        let busy = delta(machine) as f64 / tck;
        if window > 0.0 {
            m.insert(
                "machine".into(),
                json!({
                    "busy_cores": (busy / window * 100.0).round() / 100.0,
                    "other_cores": (other / window * 100.0).round() / 100.0,
                }),
            );
        }
    }
    for ((name, b), (_, a)) in before.iter().zip(after).filter(|(b, _)| b.0 != "machine") {
        let secs = a.saturating_sub(*b) as f64 / tck;
        m.insert(
            name.clone(),
            json!({
                "cpu_ms": (secs * 1e4).round() / 10.0,
                "cores": if window > 0.0 { (secs / window * 1000.0).round() / 1000.0 } else { 0.0 },
                "per_req_us": if completed > 0 { (secs * 1e7 / completed as f64).round() / 10.0 } else { 0.0 },
            }),
        );
    }
    Value::Object(m)
}

pub async fn run(tgt: Target, o: RunOpts) -> Value {
    let start = Instant::now();
    let (measure_from, deadline) = match o.duration {
        Some(d) => (start + o.warmup, Some(start + o.warmup + d)),
        None => (start, None),
    };
    let sh = Arc::new(Shared {
        tgt,
        measure_from,
        deadline,
        requests: o.requests,
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        req_timeout: o.req_timeout,
        connect_timeout: o.connect_timeout,
        trace: o.trace_out.is_some(),
    });
    let rss_start: Vec<(String, u64)> = o
        .pids
        .iter()
        .map(|g| (g.name.clone(), g.rss_kib()))
        .collect();
    let handles: Vec<_> = (0..o.concurrency.max(1))
        .map(|_| tokio::spawn(worker(sh.clone())))
        .collect();

    let sig = {
        let sh = sh.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                sh.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    tokio::time::sleep_until(measure_from).await;
    let cpu_before = cpu_snapshot(&o.pids);
    let rss_before: Vec<(String, u64)> = o
        .pids
        .iter()
        .map(|g| (g.name.clone(), g.rss_kib()))
        .collect();
    let mut cpu_after = None;
    let mut window_end = None;
    if let Some(d) = deadline {
        // Wake up at the deadline or on Ctrl-C, whichever comes first.
        while Instant::now() < d && !sh.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50).min(d - Instant::now())).await;
        }
        let now = Instant::now();
        cpu_after = Some(cpu_snapshot(&o.pids));
        window_end = Some(now);
    }
    let mut total = WorkerStats::new();
    for h in handles {
        if let Ok(s) = h.await {
            total.merge(s);
        }
    }
    sig.abort();
    let window_end = window_end.unwrap_or_else(|| total.last_done.unwrap_or_else(Instant::now));
    let cpu_after = cpu_after.unwrap_or_else(|| cpu_snapshot(&o.pids));
    let rss_after: Vec<(String, u64)> = o
        .pids
        .iter()
        .map(|g| (g.name.clone(), g.rss_kib()))
        .collect();
    let window = window_end
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    if let Some(path) = &o.trace_out {
        total.trace.sort_unstable();
        let lines: String = total
            .trace
            .iter()
            .map(|(s, t)| format!("{s} {t}\n"))
            .collect();
        if let Err(e) = std::fs::write(path, lines) {
            eprintln!("loadgen: writing {}: {e}", path.display());
        }
    }
    let completed = total.completed_in_window;
    let errors: u64 = total.errors.values().sum();
    let mut rss = serde_json::Map::new();
    for (((name, s), (_, b)), (_, a)) in rss_start.iter().zip(&rss_before).zip(&rss_after) {
        rss.insert(
            name.clone(),
            json!({"start": s, "before": b, "after": a,
                   "delta_per_req_kib": if completed > 0 { ((*a as f64 - *b as f64) / completed as f64 * 1000.0).round() / 1000.0 } else { 0.0 }}),
        );
    }
    json!({
        "mode": "run",
        "window_secs": (window * 1000.0).round() / 1000.0,
        "ok": total.ok,
        "completed_in_window": completed,
        "rps": if window > 0.0 { (completed as f64 / window * 10.0).round() / 10.0 } else { 0.0 },
        "errors": errors,
        "error_kinds": total.errors,
        "warmup_errors": total.warmup_errors,
        "connects": total.connects,
        "latency_us": {
            "headers": summary(&total.headers),
            "ttft": summary(&total.ttft),
            "gap": summary(&total.gaps),
            "total": summary(&total.total),
        },
        "cpu": cpu_json(&cpu_before, &cpu_after, window, completed),
        "rss_kib": Value::Object(rss),
    })
}
