//! The `streamgate` binary: load `.env`, read settings, start logging, serve.

use std::process::ExitCode;

use streamgate::settings::{Settings, SettingsError};
use streamgate::startup::Application;

/// mimalloc, not the C library's malloc: a burst of requests frees many small blocks at once;
/// glibc's per-thread cache keeps 7 blocks of a size, and past that each free goes through the
/// arena's bins (~170 instructions a free in the profile of a burst). With mimalloc the
/// gateway runs 15% fewer instructions per request in the bursts of scenario (a)
/// (`bench/phases.sh`, bench/HISTORY.md), at about the same memory per stream.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    // A missing .env is normal; the real environment wins over it (dotenvy never overrides).
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("streamgate: .env could not be read: {e}");
        return ExitCode::from(2);
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(SettingsError::Cli(e)) => e.exit(),
        Err(SettingsError::Invalid(problems)) => {
            for problem in problems {
                eprintln!("streamgate: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    streamgate::telemetry::init(&settings);
    raise_open_file_limit();
    let app = match Application::build(settings.clone()) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("streamgate: {e}");
            return ExitCode::from(1);
        }
    };
    let upstream = settings.upstream_base_url.0.as_ref().map_or_else(
        || "the built-in mock model".to_owned(),
        |u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")),
    );
    // Before the startup line: whoever reads it may signal at once.
    let signals = streamgate::startup::StopSignals::listen();
    // `port` is also a field of its own, so tools reading JSON logs find it (with PORT=0).
    tracing::info!(
        port = app.port(),
        "streamgate listening on http://{}:{} (chat page at /), answering from {upstream}",
        settings.host,
        app.port()
    );
    if let Some(warning) = streamgate::auth::exposure_warning(&settings) {
        tracing::warn!("{warning}");
    }
    match app.run_until_stopped(signals).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamgate: {e}");
            ExitCode::from(1)
        }
    }
}

/// Each stream holds two descriptors (client and upstream); the soft limit is often 1024.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}
