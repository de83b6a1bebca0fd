//! loadgen: a streaming load generator for `/v1/chat/completions` and `/api/chat`.
//!
//! `loadgen run`    closed loop at concurrency C; per request the time to response headers, to
//!                  the first content event, every gap between events, and the total; hdrhistogram
//!                  p50/p90/p99/p99.9/max in µs, req/s, errors; CPU (utime+stime from /proc) and
//!                  RSS of `--pid` processes over the measured window.
//! `loadgen hold`   opens N streams, holds them, reports opened/failed and RSS per held stream.
//! `loadgen report` turns the `--json-out` files of a bench/run.sh run into markdown tables.

mod client;
mod hold;
mod report;
mod run;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use streamgate_bench::procfs::PidGroup;

use crate::client::{BodyOpts, Dialect, Target};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Streaming load generator for streamgate benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed loop at concurrency C for a duration or a request count.
    Run(RunArgs),
    /// Open N streams and keep them open; report RSS per stream of --pid processes.
    Hold(HoldArgs),
    /// Print markdown tables from the JSON files written with --json-out.
    Report(ReportArgs),
}

#[derive(Args)]
struct Common {
    /// Base URL (loopback only). The dialect's path is appended: /v1/chat/completions or /api/chat.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, value_enum, default_value_t = Dialect::Openai)]
    dialect: Dialect,
    /// Request path, replacing the dialect's default.
    #[arg(long)]
    path: Option<String>,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    api_key: Option<String>,
    /// `model` field of the request (omitted when not given).
    #[arg(long)]
    model: Option<String>,
    #[arg(long, default_value = "Say hello in a few words.")]
    prompt: String,
    /// Ask for `stream_options.include_usage` (openai dialect).
    #[arg(long)]
    include_usage: bool,
    /// JSON object merged into the request body, e.g. '{"bench_delay_ms":0}'; `@FILE` reads
    /// it from FILE (so that a long one, a chat history, stays out of the command line).
    #[arg(long)]
    extra_json: Option<String>,
    /// Raw JSON request body, replacing the generated one.
    #[arg(long)]
    body: Option<String>,
    /// Processes to measure: NAME=PID[,PID...] (repeatable; e.g. sut=1234, upstream=99).
    #[arg(long = "pid", value_parser = PidGroup::parse)]
    pids: Vec<PidGroup>,
    /// Label of the system under test in reports (direct, gateway, nginx, …).
    #[arg(long, default_value = "run")]
    label: String,
    /// Scenario key in reports (a-c64, b-c64, c-hold5000, …).
    #[arg(long, default_value = "")]
    scenario: String,
    /// Scenario title in reports.
    #[arg(long, default_value = "")]
    title: String,
    /// Which round of a repeated scenario this is: the report pairs each system with the
    /// `direct` run of the same round and shows the median over rounds.
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// Print the result as JSON on stdout (the human table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the JSON result to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent requests (one connection each).
    #[arg(short = 'c', long, default_value_t = 64)]
    concurrency: usize,
    /// Measured duration in seconds, after the warm-up (default 10 unless --requests is given).
    #[arg(short = 'd', long)]
    duration_secs: Option<f64>,
    /// Total requests instead of a duration (no warm-up).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Warm-up seconds whose requests are not recorded (duration mode).
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Per-request time limit in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout_secs: f64,
    #[arg(long, default_value_t = 5.0)]
    connect_timeout_secs: f64,
    /// Also write one line per measured request to this file: when it started (µs after the
    /// measured window opened) and its time to first content event (µs), in start order. For
    /// bench/ttft_bursts.py, which shows where in a burst of requests the slow ones are.
    #[arg(long)]
    trace_out: Option<PathBuf>,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// Streams to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    streams: usize,
    /// Connects (up to the response headers) in flight at once while ramping.
    #[arg(long, default_value_t = 128)]
    connect_parallel: usize,
    /// Time limit for one stream to open (connect + response headers).
    #[arg(long, default_value_t = 30.0)]
    open_timeout_secs: f64,
    /// Time limit for the whole ramp.
    #[arg(long, default_value_t = 120.0)]
    ramp_timeout_secs: f64,
    /// How long to hold the streams open after the ramp (Ctrl-C / SIGTERM end it early).
    #[arg(long, default_value_t = 10.0)]
    hold_secs: f64,
    /// Pause after the ramp (and after closing) before reading RSS.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
}

#[derive(Args)]
struct ReportArgs {
    /// JSON result files, in the order to show them.
    files: Vec<PathBuf>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn target(c: &Common) -> Result<Target, String> {
    let extra_json = match c.extra_json.as_deref() {
        Some(file) if file.starts_with('@') => Some(
            std::fs::read_to_string(&file[1..]).map_err(|e| format!("--extra-json {file}: {e}"))?,
        ),
        other => other.map(str::to_owned),
    };
    Target::new(
        &c.url,
        c.path.as_deref(),
        c.dialect,
        c.api_key.as_deref(),
        &BodyOpts {
            model: c.model.as_deref(),
            prompt: &c.prompt,
            include_usage: c.include_usage,
            extra_json: extra_json.as_deref(),
            body: c.body.as_deref(),
        },
    )
}

fn finish(
    c: &Common,
    tgt: &Target,
    extra: Value,
    print_human: impl Fn(&Value) -> String,
) -> ExitCode {
    let mut v = extra;
    v["label"] = c.label.clone().into();
    v["scenario"] = c.scenario.clone().into();
    v["title"] = c.title.clone().into();
    v["round"] = c.round.into();
    v["dialect"] = c.dialect.name().into();
    v["url"] = tgt.url.clone().into();
    v["command"] = std::env::args().collect::<Vec<_>>().join(" ").into();
    let human = print_human(&v);
    if c.json {
        eprintln!("{human}");
        println!("{v}");
    } else {
        println!("{human}");
    }
    if let Some(p) = &c.json_out
        && let Err(e) = std::fs::write(p, format!("{v}\n"))
    {
        eprintln!("loadgen: writing {}: {e}", p.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report(r) => match report::report(&r.files) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen report: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run(a) => {
            let tgt = match target(&a.common) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            let duration = match (a.duration_secs, a.requests) {
                (Some(d), _) => Some(secs(d)),
                (None, Some(_)) => None,
                (None, None) => Some(secs(10.0)),
            };
            let opts = run::RunOpts {
                concurrency: a.concurrency,
                duration,
                requests: a.requests,
                warmup: if duration.is_some() {
                    secs(a.warmup_secs)
                } else {
                    Duration::ZERO
                },
                req_timeout: secs(a.timeout_secs),
                connect_timeout: secs(a.connect_timeout_secs),
                pids: a.common.pids.clone(),
                trace_out: a.trace_out.clone(),
            };
            let rt = streamgate_bench::runtime(a.common.threads).expect("tokio runtime");
            let mut v = rt.block_on(run::run(tgt.clone(), opts));
            v["concurrency"] = a.concurrency.into();
            finish(&a.common, &tgt, v, report::human_run)
        }
        Cmd::Hold(a) => {
            let tgt = match target(&a.common) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = hold::HoldOpts {
                streams: a.streams,
                connect_parallel: a.connect_parallel,
                open_timeout: secs(a.open_timeout_secs),
                ramp_timeout: secs(a.ramp_timeout_secs),
                hold: secs(a.hold_secs),
                settle: secs(a.settle_secs),
                pids: a.common.pids.clone(),
            };
            let rt = streamgate_bench::runtime(a.common.threads).expect("tokio runtime");
            let v = rt.block_on(hold::hold(tgt.clone(), opts));
            finish(&a.common, &tgt, v, report::human_hold)
        }
    }
}
