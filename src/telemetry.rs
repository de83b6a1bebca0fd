//! Logging through `tracing`: text for people, JSON (one object per line) for machines.

use tracing_subscriber::EnvFilter;

use crate::settings::Settings;
use crate::settings_values::LogFormat;

pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|e| {
        eprintln!(
            "streamgate: RUST_LOG={:?} is not a valid filter ({e}); using \"info\"",
            settings.rust_log
        );
        EnvFilter::new("info")
    });
    // Colours only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already set (tests start many apps in one process): keep the first.
    let _ = result;
}
