//! Integration tests: the real server over loopback, against the mock model or a scripted
//! upstream. One binary, one module per area.

// A test that fails should fail loudly, right where it went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod browser_dialect;
mod cancellation;
mod cors;
mod hostile;
mod https_upstream;
mod logs;
mod metrics;
mod mock_model;
mod openai_dialect;
mod proxy;
mod rate_limits;
mod resume;
mod shutdown;
mod stream_caps;
mod support;
mod upstream_failures;
