//! Settings: each one an environment variable (read after `.env`) and a command-line flag.
//!
//! One table below declares every setting once: its field, type, variable, default and the
//! sentence `--help` shows. Values are looked up through a function rather than
//! `std::env`, so tests build settings from a map and never touch the process environment.

use std::ffi::OsString;
use std::num::NonZeroU64;

use clap::{Arg, Command};

use crate::secret::Secret;
use crate::settings_values::{Keys, List, LogFormat, Origins, SettingValue, UpstreamUrl};

macro_rules! settings {
    ($( #[doc = $doc:literal] $field:ident : $ty:ty = $env:literal, $default:literal; )+) => {
        /// Every setting of the gateway, typed and validated.
        #[derive(Clone, Debug)]
        pub struct Settings {
            $( #[doc = $doc] pub $field: $ty, )+
        }

        impl Settings {
            fn command() -> Command {
                Command::new("streamgate")
                    .version(env!("CARGO_PKG_VERSION"))
                    .about("An LLM streaming gateway: relays OpenAI-compatible token streams as Server-Sent Events.")
                    .after_help("Every flag can also be set by its environment variable, or in a .env file; the real environment wins over .env, and a flag over both.")
                    $( .arg(
                        Arg::new(stringify!($field))
                            .long($env.to_ascii_lowercase().replace('_', "-"))
                            .value_name(<$ty as SettingValue>::VALUE_NAME)
                            .help(format!("{} [env: {}] [default: {}]", $doc.trim(), $env, if $default.is_empty() { "none" } else { $default }))
                    ) )+
            }

            /// Reads settings from command-line `args` (the first is the program name), then
            /// `lookup` (the environment), then the defaults. Every bad value is reported, not
            /// just the first.
            pub fn from_sources<I, T>(args: I, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError>
            where
                I: IntoIterator<Item = T>,
                T: Into<OsString> + Clone,
            {
                let matches = Self::command().try_get_matches_from(args).map_err(SettingsError::Cli)?;
                let mut problems = Vec::new();
                $(
                    let raw = matches
                        .get_one::<String>(stringify!($field))
                        .cloned()
                        .or_else(|| lookup($env))
                        .unwrap_or_else(|| $default.to_owned());
                    let $field = <$ty as SettingValue>::parse(raw.trim());
                    if $field.is_none() {
                        problems.push(format!(
                            "invalid {}={:?}: expected {}",
                            $env, raw, <$ty as SettingValue>::EXPECTED
                        ));
                    }
                )+
                match ($($field,)+) {
                    ($(Some($field),)+) => Ok(Settings { $($field,)+ }),
                    _ => Err(SettingsError::Invalid(problems)),
                }
            }

            /// The environment variable names, in table order (for `.env.example` checks).
            pub fn variable_names() -> &'static [&'static str] {
                &[$($env),+]
            }
        }
    };
}

settings! {
    /// Address to listen on (0.0.0.0 in a container)
    host: String = "HOST", "127.0.0.1";
    /// Port to listen on (0 picks a free one)
    port: u16 = "PORT", "8080";
    /// Worker threads, each with its own event loop and upstream connections; 0 = one per CPU
    workers: usize = "WORKERS", "0";
    /// OpenAI-compatible base URL, e.g. https://api.openai.com/v1; empty serves the built-in mock model
    upstream_base_url: UpstreamUrl = "UPSTREAM_BASE_URL", "";
    /// Key sent upstream as `Authorization: Bearer`; never shown to clients or logs
    upstream_api_key: Secret = "UPSTREAM_API_KEY", "";
    /// Model used when a request names none (default: `mock` in mock mode)
    upstream_model: String = "UPSTREAM_MODEL", "";
    /// Comma list of models clients may ask for; empty allows any
    allowed_models: List = "ALLOWED_MODELS", "";
    /// Seconds to establish the upstream connection
    upstream_connect_timeout_secs: NonZeroU64 = "UPSTREAM_CONNECT_TIMEOUT_SECS", "10";
    /// Seconds from sending a request until the upstream's first event
    upstream_first_token_timeout_secs: NonZeroU64 = "UPSTREAM_FIRST_TOKEN_TIMEOUT_SECS", "300";
    /// Longest gap in seconds between upstream events once streaming; there is no total timeout
    upstream_idle_timeout_secs: NonZeroU64 = "UPSTREAM_IDLE_TIMEOUT_SECS", "60";
    /// Retries before the first token on connect errors, 429 and 5xx, with backoff
    upstream_retries: u32 = "UPSTREAM_RETRIES", "2";
    /// Comma list of keys clients must present (Bearer or x-api-key); empty leaves the gateway open
    gateway_api_keys: Keys = "GATEWAY_API_KEYS", "";
    /// Requests per minute per client (key, else IP) that start a generation; 0 turns it off
    rate_limit_rpm: u32 = "RATE_LIMIT_RPM", "60";
    /// Requests a client may make at once before the per-minute pace applies
    rate_limit_burst: u32 = "RATE_LIMIT_BURST", "10";
    /// Requests per second for all clients together; 0 turns it off
    global_rate_limit_rps: u32 = "GLOBAL_RATE_LIMIT_RPS", "0";
    /// Concurrent generations per client
    max_streams_per_client: u32 = "MAX_STREAMS_PER_CLIENT", "8";
    /// Concurrent generations in total; beyond it requests get 503
    max_streams: u32 = "MAX_STREAMS", "10000";
    /// Take the client IP from X-Forwarded-For (only behind a proxy you trust)
    trust_proxy: bool = "TRUST_PROXY", "false";
    /// Comma list of origins allowed by CORS, or *; empty allows same-origin only
    cors_allowed_origins: Origins = "CORS_ALLOWED_ORIGINS", "";
    /// Largest request body in bytes; larger ones get 413
    max_body_bytes: usize = "MAX_BODY_BYTES", "1048576";
    /// Seconds of silence after which a stream carries a `: ping` comment
    heartbeat_secs: NonZeroU64 = "HEARTBEAT_SECS", "15";
    /// Seconds a finished browser stream stays available for resume
    stream_ttl_secs: NonZeroU64 = "STREAM_TTL_SECS", "300";
    /// Seconds a browser generation may run with no reader before it is cancelled
    resume_grace_secs: NonZeroU64 = "RESUME_GRACE_SECS", "30";
    /// Seconds running streams get to finish after SIGTERM
    shutdown_grace_secs: u64 = "SHUTDOWN_GRACE_SECS", "30";
    /// Log format: text or json (one object per line)
    log_format: LogFormat = "LOG_FORMAT", "text";
    /// Log filter, as tracing's EnvFilter reads it
    rust_log: String = "RUST_LOG", "info";
    /// Mock model: milliseconds before the first token
    mock_ttft_ms: u64 = "MOCK_TTFT_MS", "200";
    /// Mock model: tokens per second (0 sends them as fast as possible)
    mock_tokens_per_sec: u32 = "MOCK_TOKENS_PER_SEC", "40";
    /// Mock model: tokens in an answer
    mock_max_tokens: u32 = "MOCK_MAX_TOKENS", "128";
}

impl Settings {
    /// Reads the process's arguments and environment (after `.env`, which `main` loads).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_sources(std::env::args_os(), |key| std::env::var(key).ok())
    }

    /// Settings from a list of `(VARIABLE, value)` pairs and defaults for the rest: for tests.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, SettingsError> {
        Self::from_sources(["streamgate"], |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    pub fn is_mock(&self) -> bool {
        self.upstream_base_url.0.is_none()
    }

    /// The model used when a request names none.
    pub fn default_model(&self) -> &str {
        match (self.upstream_model.as_str(), self.is_mock()) {
            ("", true) => "mock",
            (model, _) => model,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A flag problem, or `--help`/`--version`: clap prints and exits.
    #[error(transparent)]
    Cli(clap::Error),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_the_mock_model_on_loopback() {
        let s = Settings::from_pairs(&[]).unwrap();
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.port, 8080);
        assert!(s.is_mock());
        assert_eq!(s.default_model(), "mock");
        assert_eq!(s.heartbeat_secs.get(), 15);
        assert_eq!(s.max_body_bytes, 1_048_576);
    }

    #[test]
    fn every_bad_value_is_named_with_what_was_expected() {
        let err = Settings::from_pairs(&[
            ("PORT", "eighty"),
            ("TRUST_PROXY", "maybe"),
            ("UPSTREAM_BASE_URL", "ftp://x"),
            ("HEARTBEAT_SECS", "0"),
        ])
        .unwrap_err();
        let SettingsError::Invalid(lines) = err else {
            panic!("expected invalid values, got {err:?}");
        };
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with("invalid PORT=\"eighty\": expected"),
            "{}",
            lines[0]
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("UPSTREAM_BASE_URL=\"ftp://x\""))
        );
        assert!(lines.iter().any(|l| l.contains("TRUST_PROXY")));
        assert!(lines.iter().any(|l| l.contains("HEARTBEAT_SECS")));
    }

    #[test]
    fn a_flag_wins_over_the_environment() {
        let s = Settings::from_sources(["streamgate", "--port", "9000"], |k| {
            (k == "PORT").then(|| "7000".to_owned())
        })
        .unwrap();
        assert_eq!(s.port, 9000);
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let help = Settings::command().render_long_help().to_string();
        // Lines wrap to the terminal width; compare with whitespace folded.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for name in Settings::variable_names() {
            assert!(
                help.contains(&format!("[env: {name}]")),
                "{name} missing from --help"
            );
        }
        assert!(help.contains("[default: 8080]"));
    }

    #[test]
    fn upstream_settings_switch_off_the_mock() {
        let s = Settings::from_pairs(&[
            ("UPSTREAM_BASE_URL", "https://api.openai.com/v1/"),
            ("UPSTREAM_MODEL", "gpt-4o-mini"),
            ("UPSTREAM_API_KEY", "sk-secret"),
        ])
        .unwrap();
        assert!(!s.is_mock());
        assert_eq!(s.default_model(), "gpt-4o-mini");
        assert!(!format!("{s:?}").contains("sk-secret"));
    }
}

#[cfg(test)]
mod example_file {
    use super::Settings;

    /// `.env.example` is where users learn the settings: it must name every one, with a
    /// value that parses.
    #[test]
    fn env_example_shows_every_setting_with_a_valid_default() {
        let text = include_str!("../.env.example");
        let pairs: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        for name in Settings::variable_names() {
            assert!(
                pairs.iter().any(|(k, _)| k == name),
                "{name} missing from .env.example"
            );
        }
        Settings::from_pairs(&pairs).expect("the example's values are valid");
    }
}
