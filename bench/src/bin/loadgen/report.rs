//! Human-readable output of one run, and the markdown report over a whole bench/run.sh run.

use std::{fmt::Write as _, path::PathBuf};

use serde_json::Value;

fn num(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn ms(us: Option<f64>) -> String {
    us.map_or("—".into(), |u| format!("{:.2}", u / 1000.0))
}

fn signed_ms(us: Option<f64>) -> String {
    us.map_or("—".into(), |u| format!("{:+.2}", u / 1000.0))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |x| format!("{x:.digits$}"))
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The table printed after `loadgen run`.
pub fn human_run(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "[{}] {} {} {} C={} window {:.2}s",
        s(v, "label"),
        s(v, "scenario"),
        s(v, "dialect"),
        s(v, "url"),
        num(v, "/concurrency").unwrap_or(0.0),
        num(v, "/window_secs").unwrap_or(0.0)
    );
    let _ = writeln!(
        o,
        "ok {} (completed in window {}), errors {} {}, warm-up errors {}, connects {} => {:.1} req/s",
        num(v, "/ok").unwrap_or(0.0),
        num(v, "/completed_in_window").unwrap_or(0.0),
        num(v, "/errors").unwrap_or(0.0),
        v.get("error_kinds")
            .map(Value::to_string)
            .unwrap_or_default(),
        num(v, "/warmup_errors").unwrap_or(0.0),
        num(v, "/connects").unwrap_or(0.0),
        num(v, "/rps").unwrap_or(0.0),
    );
    let _ = writeln!(
        o,
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  (ms)",
        "", "p50", "p90", "p99", "p99.9", "max", "count"
    );
    for k in ["headers", "ttft", "gap", "total"] {
        let p = |q: &str| ms(num(v, &format!("/latency_us/{k}/{q}")));
        let _ = writeln!(
            o,
            "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            k,
            p("p50"),
            p("p90"),
            p("p99"),
            p("p999"),
            p("max"),
            num(v, &format!("/latency_us/{k}/count")).unwrap_or(0.0)
        );
    }
    if let Some(Value::Object(cpu)) = v.get("cpu") {
        let parts: Vec<String> = cpu
            .iter()
            .filter(|(name, _)| name.as_str() != "machine")
            .map(|(name, c)| {
                format!(
                    "{name} {} µs/req ({} cores)",
                    opt(num(c, "/per_req_us"), 1),
                    opt(num(c, "/cores"), 2)
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "cpu: {} | machine busy {} cores, of which other work {} cores",
            parts.join(" | "),
            opt(num(v, "/cpu/machine/busy_cores"), 2),
            opt(num(v, "/cpu/machine/other_cores"), 2)
        );
    }
    if let Some(Value::Object(rss)) = v.get("rss_kib")
        && !rss.is_empty()
    {
        let parts: Vec<String> = rss
            .iter()
            .map(|(name, r)| {
                format!(
                    "{name} {:.1} -> {:.1} MiB",
                    num(r, "/before").unwrap_or(0.0) / 1024.0,
                    num(r, "/after").unwrap_or(0.0) / 1024.0
                )
            })
            .collect();
        let _ = writeln!(o, "rss: {}", parts.join(" | "));
    }
    o
}

/// The summary printed after `loadgen hold`.
pub fn human_hold(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "[{}] {} hold {} {}: opened {}/{} failed {} {} closed early {}, ramp {:.2}s, held {:.1}s, open p50 {} ms p99 {} ms, nofile {}",
        s(v, "label"),
        s(v, "scenario"),
        s(v, "dialect"),
        s(v, "url"),
        num(v, "/opened").unwrap_or(0.0),
        num(v, "/streams").unwrap_or(0.0),
        num(v, "/failed").unwrap_or(0.0),
        v.get("error_kinds")
            .map(Value::to_string)
            .unwrap_or_default(),
        num(v, "/closed_early").unwrap_or(0.0),
        num(v, "/ramp_secs").unwrap_or(0.0),
        num(v, "/held_secs").unwrap_or(0.0),
        ms(num(v, "/open_latency_us/p50")),
        ms(num(v, "/open_latency_us/p99")),
        num(v, "/nofile/soft").unwrap_or(0.0),
    );
    if let Some(Value::Object(rss)) = v.get("rss_kib") {
        for (name, r) in rss {
            let _ = writeln!(
                o,
                "rss {name}: before {:.1} MiB, held {:.1} MiB, after close {:.1} MiB => {} KiB per held stream",
                num(r, "/before").unwrap_or(0.0) / 1024.0,
                num(r, "/held").unwrap_or(0.0) / 1024.0,
                num(r, "/after_close").unwrap_or(0.0) / 1024.0,
                opt(num(r, "/per_stream_kib"), 2)
            );
        }
    }
    o
}

fn find<'a>(rows: &'a [Value], scenario: &str, label: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| s(r, "scenario") == scenario && s(r, "label") == label)
}

fn run_table(o: &mut String, rows: &[&Value]) {
    let direct = rows.iter().find(|r| s(r, "label") == "direct");
    let nginx = rows.iter().find(|r| s(r, "label") == "nginx");
    let _ = writeln!(
        o,
        "| system | req/s | ×direct | ×nginx | TTFT p50 | TTFT p99 | +TTFT p50 | +TTFT p99 | gap p99 | +gap p99 | total p99 | SUT CPU µs/req | ×nginx | upstream CPU µs/req | SUT RSS Δ KiB/req | other load (cores) | errors |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let g = |p: &str| num(r, p);
        let diff = |p: &str| match (g(p), direct.and_then(|d| num(d, p))) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let rps = g("/rps");
        let sut_cpu = g("/cpu/sut/per_req_us");
        let _ = writeln!(
            o,
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s(r, "label"),
            s(r, "dialect"),
            opt(rps, 1),
            ratio(rps, direct.and_then(|d| num(d, "/rps"))),
            ratio(rps, nginx.and_then(|d| num(d, "/rps"))),
            ms(g("/latency_us/ttft/p50")),
            ms(g("/latency_us/ttft/p99")),
            signed_ms(diff("/latency_us/ttft/p50")),
            signed_ms(diff("/latency_us/ttft/p99")),
            ms(g("/latency_us/gap/p99")),
            signed_ms(diff("/latency_us/gap/p99")),
            ms(g("/latency_us/total/p99")),
            opt(sut_cpu, 1),
            ratio(sut_cpu, nginx.and_then(|d| num(d, "/cpu/sut/per_req_us"))),
            opt(g("/cpu/upstream/per_req_us"), 1),
            opt(g("/rss_kib/sut/delta_per_req_kib"), 2),
            opt(g("/cpu/machine/other_cores"), 2),
            opt(g("/errors"), 0),
        );
    }
}

fn hold_table(o: &mut String, rows: &[&Value]) {
    let nginx = rows.iter().find(|r| s(r, "label") == "nginx");
    let _ = writeln!(
        o,
        "| system | opened / asked | failed | closed early | ramp s | open p99 ms | SUT RSS before MiB | held MiB | KiB / stream | ×nginx | after close MiB | upstream KiB / stream |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let g = |p: &str| num(r, p);
        let mib = |p: &str| g(p).map(|k| k / 1024.0);
        let per = g("/rss_kib/sut/per_stream_kib");
        let _ = writeln!(
            o,
            "| {} ({}) | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s(r, "label"),
            s(r, "dialect"),
            opt(g("/opened"), 0),
            opt(g("/streams"), 0),
            opt(g("/failed"), 0),
            opt(g("/closed_early"), 0),
            opt(g("/ramp_secs"), 2),
            ms(g("/open_latency_us/p99")),
            opt(mib("/rss_kib/sut/before"), 1),
            opt(mib("/rss_kib/sut/held"), 1),
            opt(per, 2),
            ratio(
                per,
                nginx.and_then(|n| num(n, "/rss_kib/sut/per_stream_kib"))
            ),
            opt(mib("/rss_kib/sut/after_close"), 1),
            opt(g("/rss_kib/upstream/per_stream_kib"), 2),
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn targets(o: &mut String, rows: &[Value]) {
    let _ = writeln!(o, "### Targets\n");
    let _ = writeln!(o, "| target | measured | verdict |\n|---|---|---|");
    for sc in ["a-c64", "a-c256"] {
        let (Some(d), Some(gw)) = (find(rows, sc, "direct"), find(rows, sc, "gateway")) else {
            continue;
        };
        let add = |r: &Value, q: &str| {
            let p = format!("/latency_us/ttft/{q}");
            Some(num(r, &p)? - num(d, &p)?)
        };
        let (g50, g99) = (add(gw, "p50"), add(gw, "p99"));
        match find(rows, sc, "nginx") {
            Some(ng) => {
                let (n50, n99) = (add(ng, "p50"), add(ng, "p99"));
                let ok = matches!((g50, n50, g99, n99), (Some(a), Some(b), Some(c), Some(e)) if a <= b && c <= e);
                let _ = writeln!(
                    o,
                    "| {sc}: added TTFT ≤ nginx's (p50, p99) | gateway {} / {} ms, nginx {} / {} ms | {} |",
                    signed_ms(g50),
                    signed_ms(g99),
                    signed_ms(n50),
                    signed_ms(n99),
                    verdict(ok)
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "| {sc}: added TTFT ≤ nginx's (p50, p99) | gateway {} / {} ms; nginx not measured | n/a |",
                    signed_ms(g50),
                    signed_ms(g99)
                );
            }
        }
    }
    if let (Some(d), Some(gw)) = (
        find(rows, "b-c64", "direct"),
        find(rows, "b-c64", "gateway"),
    ) {
        let r = match (num(gw, "/rps"), num(d, "/rps")) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let _ = writeln!(
            o,
            "| b-c64: no-delay req/s ≥ 0.75× direct | {} ({} vs {} req/s) | {} |",
            r.map_or("—".into(), |x| format!("{x:.2}×")),
            opt(num(gw, "/rps"), 1),
            opt(num(d, "/rps"), 1),
            verdict(r.is_some_and(|x| x >= 0.75))
        );
    }
    for label in ["gateway", "gateway-browser"] {
        if let Some(gw) = find(rows, "c-hold5000", label) {
            let per = num(gw, "/rss_kib/sut/per_stream_kib");
            let _ = writeln!(
                o,
                "| c-hold5000 ({label}): ≤ 16 KiB RSS per idle held stream | {} KiB ({} open) | {} |",
                opt(per, 2),
                opt(num(gw, "/open_when_measured"), 0),
                verdict(per.is_some_and(|p| p <= 16.0) && num(gw, "/failed") == Some(0.0))
            );
        }
    }
    if let Some(gw) = find(rows, "c-hold9000", "gateway") {
        let asked = num(gw, "/streams").unwrap_or(0.0);
        let opened = num(gw, "/opened").unwrap_or(0.0);
        let failed = num(gw, "/failed").unwrap_or(0.0);
        let early = num(gw, "/closed_early").unwrap_or(0.0);
        let _ = writeln!(
            o,
            "| c-hold9000: 9,000 concurrent streams, no failure | {opened}/{asked} opened, {failed} failed, {early} closed early | {} |",
            if asked < 9000.0 {
                "n/a (fewer asked)"
            } else {
                verdict(opened == asked && failed == 0.0 && early == 0.0)
            }
        );
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| s(r, "mode") == "run" && num(r, "/errors").unwrap_or(0.0) > 0.0)
        .map(|r| {
            format!(
                "{}/{}: {}",
                s(r, "scenario"),
                s(r, "label"),
                r.get("error_kinds")
                    .map(Value::to_string)
                    .unwrap_or_default()
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "| no request errors in any closed-loop run | {} | {} |",
        if bad.is_empty() {
            "none".to_string()
        } else {
            bad.join("; ")
        },
        verdict(bad.is_empty())
    );
}

/// Markdown report over result files.
pub fn report(files: &[PathBuf]) -> Result<String, String> {
    let mut rows = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("reading {}: {e}", f.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a loadgen JSON result: {e}", f.display()))?;
        rows.push(v);
    }
    let mut order: Vec<String> = Vec::new();
    for r in &rows {
        let sc = s(r, "scenario");
        if !order.contains(&sc) {
            order.push(sc);
        }
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Times in ms; \"+\" columns are the difference to `direct` in the same scenario; \
         × columns are ratios; SUT = the process under test (gateway or nginx, all its processes); \
         \"other load\" = cores busy with anything but the measured processes during the row \
         (another job on the machine makes that row's p99 unreliable)."
    );
    for sc in &order {
        let group: Vec<&Value> = rows.iter().filter(|r| &s(r, "scenario") == sc).collect();
        let title = group.iter().map(|r| s(r, "title")).find(|t| !t.is_empty());
        let _ = writeln!(o, "\n### {}\n", title.unwrap_or_else(|| sc.clone()));
        let (runs, holds): (Vec<&Value>, Vec<&Value>) =
            group.into_iter().partition(|r| s(r, "mode") == "run");
        if !runs.is_empty() {
            run_table(&mut o, &runs);
        }
        if !holds.is_empty() {
            hold_table(&mut o, &holds);
        }
    }
    o.push('\n');
    targets(&mut o, &rows);
    let _ = writeln!(o, "\n### loadgen commands\n\n```");
    for r in &rows {
        let _ = writeln!(o, "{}", s(r, "command"));
    }
    let _ = writeln!(o, "```");
    Ok(o)
}
