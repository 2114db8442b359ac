#!/usr/bin/env bash
# Runs every check CI enforces: formatting, clippy (warnings denied, every target and
# feature), the API docs (warnings such as broken links denied), then every test: installs
# what they need, starts pcscd, then the whole workspace's tests, including those through the
# real PC/SC stack (pcscd + vpcd + the virtual card).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p kms`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# No incremental caches: CI builds once from a clean checkout, and the caches of ~160 test
# binaries take gigabytes of disk (a CI run once stopped on "No space left on device").
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*" >&2; }

step "rustfmt"
cargo fmt --all --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

step "rust-version: Cargo.toml and README agree"
scripts/check-rust-version.sh

export CARDWRIGHT_PCSC_TESTS=1      # PC/SC tests must run (and fail if pcscd is unusable)
export CARDWRIGHT_HSM_TESTS=1       # SoftHSM2 tests must run
export CARDWRIGHT_PG_TESTS=1        # PostgreSQL tests must run
export CARDWRIGHT_BROWSER_TESTS=1   # headless Chromium tests must run
export CARDWRIGHT_OPENSSL_TESTS=1   # openssl CLI interoperability tests must run
export CARDWRIGHT_SMSC_TESTS=1      # SMS tests through Jasmin (the SMSC) must run
export RUST_BACKTRACE=1
step "SMSC: Jasmin against the local RabbitMQ and Redis"
scripts/smsc.sh start
trap 'scripts/smsc.sh stop || true' EXIT

step "tests"
cargo test --workspace --features cardwright/pcsc,card/scp81 --locked --no-fail-fast "$@"

step "disk used by the build"
du -sh target 2>/dev/null || true
df -h . | tail -1

step "schemathesis: both HTTP APIs against their OpenAPI documents"
scripts/schemathesis.sh
