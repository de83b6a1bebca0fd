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

/// Every run of one system in one scenario, one per round.
fn runs_of<'a>(rows: &'a [Value], scenario: &str, label: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| s(r, "scenario") == scenario && s(r, "label") == label)
        .collect()
}

fn round(v: &Value) -> u64 {
    v.get("round").and_then(Value::as_u64).unwrap_or(1)
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// `f` of each run against the baseline run of the same round: rounds run the systems one
/// after another, so pairing them cancels most of a drift in the machine's load.
fn per_round(
    runs: &[&Value],
    base: &[&Value],
    f: impl Fn(&Value, &Value) -> Option<f64>,
) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| f(r, base.iter().find(|b| round(b) == round(r))?))
        .collect()
}

fn difference(runs: &[&Value], base: &[&Value], p: &str) -> Vec<f64> {
    per_round(runs, base, |r, b| Some(num(r, p)? - num(b, p)?))
}

fn quotient(runs: &[&Value], base: &[&Value], p: &str) -> Vec<f64> {
    per_round(runs, base, |r, b| {
        let (a, b) = (num(r, p)?, num(b, p)?);
        (b > 0.0).then(|| a / b)
    })
}

/// The gateway against another relay, round by round: the direct run of a round cancels out
/// of the two added times, so this is their difference as measured in the same minute. With
/// medians a few tenths of a millisecond apart, how many rounds went each way shows whether a
/// difference held round after round or came from a few rounds.
struct HeadToHead {
    median: Option<f64>,
    at_or_under: usize,
    rounds: usize,
}

fn head_to_head(runs: &[&Value], other: &[&Value], p: &str) -> HeadToHead {
    let each = difference(runs, other, p);
    HeadToHead {
        at_or_under: each.iter().filter(|d| **d <= 0.0).count(),
        rounds: each.len(),
        median: median(each),
    }
}

fn median_of(runs: &[&Value], p: &str) -> Option<f64> {
    median(runs.iter().filter_map(|r| num(r, p)).collect())
}

fn times(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{x:.2}×"))
}

/// The runs of a scenario grouped by system, in the order the systems first ran.
fn by_label<'a>(rows: &[&'a Value]) -> Vec<(String, Vec<&'a Value>)> {
    let mut groups: Vec<(String, Vec<&'a Value>)> = Vec::new();
    for r in rows {
        let label = s(r, "label");
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, runs)) => runs.push(r),
            None => groups.push((label, vec![r])),
        }
    }
    groups
}

/// One row per system; with several rounds, each cell is the median over rounds, and the
/// "+" and × cells are medians of per-round differences and ratios.
fn run_table(o: &mut String, rows: &[&Value]) {
    let groups = by_label(rows);
    let base = |label: &str| {
        groups
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, runs)| runs.clone())
            .unwrap_or_default()
    };
    let (direct, nginx) = (base("direct"), base("nginx"));
    let _ = writeln!(
        o,
        "| system | rounds | req/s | ×direct | ×nginx | TTFT p50 | TTFT p99 | +TTFT p50 | +TTFT p99 | gap p99 | +gap p99 | total p99 | SUT CPU µs/req | ×nginx | upstream CPU µs/req | SUT RSS Δ KiB/req | other load (cores, max) | errors |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (label, runs) in &groups {
        let g = |p: &str| median_of(runs, p);
        let diff = |p: &str| median(difference(runs, &direct, p));
        let other = runs
            .iter()
            .filter_map(|r| num(r, "/cpu/machine/other_cores"))
            .reduce(f64::max);
        let errors: f64 = runs.iter().filter_map(|r| num(r, "/errors")).sum();
        let _ = writeln!(
            o,
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            label,
            s(runs[0], "dialect"),
            runs.len(),
            opt(g("/rps"), 1),
            times(median(quotient(runs, &direct, "/rps"))),
            times(median(quotient(runs, &nginx, "/rps"))),
            ms(g("/latency_us/ttft/p50")),
            ms(g("/latency_us/ttft/p99")),
            signed_ms(diff("/latency_us/ttft/p50")),
            signed_ms(diff("/latency_us/ttft/p99")),
            ms(g("/latency_us/gap/p99")),
            signed_ms(diff("/latency_us/gap/p99")),
            ms(g("/latency_us/total/p99")),
            opt(g("/cpu/sut/per_req_us"), 1),
            times(median(quotient(runs, &nginx, "/cpu/sut/per_req_us"))),
            opt(g("/cpu/upstream/per_req_us"), 1),
            opt(g("/rss_kib/sut/delta_per_req_kib"), 2),
            opt(other, 2),
            errors,
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
        let direct = runs_of(rows, sc, "direct");
        let gateway = runs_of(rows, sc, "gateway");
        if direct.is_empty() || gateway.is_empty() {
            continue;
        }
        let added = |runs: &[&Value]| {
            let p50 = difference(runs, &direct, "/latency_us/ttft/p50");
            let p99 = difference(runs, &direct, "/latency_us/ttft/p99");
            let each = p50
                .iter()
                .zip(&p99)
                .map(|(a, b)| format!("{}/{}", signed_ms(Some(*a)), signed_ms(Some(*b))))
                .collect::<Vec<_>>();
            (median(p50), median(p99), each)
        };
        let (g50, g99, g_each) = added(&gateway);
        let nginx = runs_of(rows, sc, "nginx");
        if nginx.is_empty() {
            let _ = writeln!(
                o,
                "| {sc}: added TTFT ≤ nginx's (p50, p99) | gateway {} / {} ms; nginx not measured | n/a |",
                signed_ms(g50),
                signed_ms(g99)
            );
            continue;
        }
        let (n50, n99, n_each) = added(&nginx);
        let ok = matches!((g50, n50, g99, n99), (Some(a), Some(b), Some(c), Some(e)) if a <= b && c <= e);
        let rounds = if gateway.len() > 1 {
            let (p50, p99) = (
                head_to_head(&gateway, &nginx, "/latency_us/ttft/p50"),
                head_to_head(&gateway, &nginx, "/latency_us/ttft/p99"),
            );
            format!(
                " (median of {} rounds; each round: gateway {}, nginx {}; gateway − nginx in the \
                 same round: median {} / {} ms, the gateway at or under nginx in {} / {} of {} rounds)",
                gateway.len(),
                g_each.join(", "),
                n_each.join(", "),
                signed_ms(p50.median),
                signed_ms(p99.median),
                p50.at_or_under,
                p99.at_or_under,
                p50.rounds
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "| {sc}: added TTFT ≤ nginx's (p50, p99) | gateway {} / {} ms, nginx {} / {} ms{rounds} | {} |",
            signed_ms(g50),
            signed_ms(g99),
            signed_ms(n50),
            signed_ms(n99),
            verdict(ok)
        );
    }
    let (direct, gateway) = (
        runs_of(rows, "b-c64", "direct"),
        runs_of(rows, "b-c64", "gateway"),
    );
    if !direct.is_empty() && !gateway.is_empty() {
        let each = quotient(&gateway, &direct, "/rps");
        let r = median(each.clone());
        let nginx = runs_of(rows, "b-c64", "nginx");
        let rounds = if each.len() > 1 {
            let each: Vec<String> = each.iter().map(|x| format!("{x:.2}×")).collect();
            let against_nginx = quotient(&gateway, &nginx, "/rps");
            let against_nginx = if against_nginx.is_empty() {
                String::new()
            } else {
                format!(
                    "; gateway ÷ nginx in the same round: median {}, at or above nginx in {} of {} rounds",
                    times(median(against_nginx.clone())),
                    against_nginx.iter().filter(|q| **q >= 1.0).count(),
                    against_nginx.len()
                )
            };
            format!(
                "; median of {} rounds: {}{against_nginx}",
                each.len(),
                each.join(", ")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "| b-c64: no-delay req/s ≥ 0.75× direct | {} ({} vs {} req/s{rounds}) | {} |",
            times(r),
            opt(median_of(&gateway, "/rps"), 1),
            opt(median_of(&direct, "/rps"), 1),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// One (a) C=64 run of `label` in `round`, with only its TTFT p50.
    fn run(label: &str, round: u64, p50: f64) -> Value {
        json!({"scenario": "a-c64", "label": label, "mode": "run", "round": round,
               "latency_us": {"ttft": {"p50": p50}}})
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn each_run_is_compared_with_the_direct_run_of_its_own_round() {
        let rows = vec![
            run("direct", 1, 100.0),
            run("gateway", 1, 150.0),
            run("direct", 2, 300.0),
            run("gateway", 2, 310.0),
            run("gateway", 3, 999.0), // no direct run in round 3: left out
        ];
        let direct = runs_of(&rows, "a-c64", "direct");
        let gateway = runs_of(&rows, "a-c64", "gateway");
        let diffs = difference(&gateway, &direct, "/latency_us/ttft/p50");
        assert_eq!(diffs, vec![50.0, 10.0]);
        assert_eq!(median(diffs), Some(30.0));
    }

    #[test]
    fn head_to_head_pairs_rounds_and_counts_each_way() {
        let rows = vec![
            run("gateway", 1, 150.0),
            run("nginx", 1, 140.0),
            run("gateway", 2, 300.0),
            run("nginx", 2, 310.0),
            run("gateway", 3, 200.0),
            run("nginx", 3, 200.0),
            run("gateway", 4, 999.0), // no nginx run in round 4: left out
        ];
        let h = head_to_head(
            &runs_of(&rows, "a-c64", "gateway"),
            &runs_of(&rows, "a-c64", "nginx"),
            "/latency_us/ttft/p50",
        );
        assert_eq!((h.median, h.at_or_under, h.rounds), (Some(0.0), 2, 3));
    }
}
