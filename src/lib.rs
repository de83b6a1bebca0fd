//! streamgate: an LLM streaming gateway. See DESIGN.md for the contract and README.md for use.

pub mod auth;
pub mod backend;
pub mod cancel;
pub mod cors;
pub mod error;
pub mod id;
pub mod lifecycle;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod mock;
pub mod periodic;
pub mod ratelimit;
pub mod registry;
pub mod relay;
pub mod request;
pub mod request_id;
pub mod request_log;
pub mod routes;
mod scan;
pub mod secret;
pub mod settings;
pub mod settings_values;
pub mod sse;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod upstream;
#[cfg(test)]
mod wake_count;
