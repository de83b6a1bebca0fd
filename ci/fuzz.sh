#!/bin/sh
# Property-based fuzzing of request parsing and the upstream SSE relay (tests/fuzz/), with
# more cases than `cargo test` runs. Bounded twice: by the number of cases per property,
# and by a wall-clock limit, so a slow runner fails loudly instead of hanging the pipeline.
#
#   PROPTEST_CASES  cases per property (default 20000; `cargo test` alone runs 256)
#   FUZZ_TIMEOUT    seconds before giving up (default 1200)
#
# About a minute for 20000 cases in a debug build on two shared cores (the random number
# generator and proptest compiled optimised: Cargo.toml). A failure prints
# the shrunk input and saves its seed under tests/proptest-regressions/: commit that file.
set -eu
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
exec timeout "${FUZZ_TIMEOUT:-1200}" cargo test --test fuzz -- --test-threads 2
