//! Property-based fuzzing of what the gateway parses from the outside: client request bodies
//! (`ChatRequest::parse`) and upstream event streams (`data_events` + `chunks`, and
//! `Chunk::parse`). Nothing may panic, and well-formed input must come out as it went in.
//!
//! Each property tries `PROPTEST_CASES` inputs (proptest's own variable; 256 when unset, so
//! `cargo test` stays quick). CI runs more, for example:
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo test --release --test fuzz
//! ```
//!
//! A failure is shrunk to a minimal input and its seed saved under
//! `tests/proptest-regressions/`; committed, it is replayed first on every later run.

// A property that fails should fail loudly, right where it went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chunk;
mod json;
mod request;
mod sse;
