#!/usr/bin/env bash
# Runs every test: installs what they need, starts pcscd, then the whole workspace's tests,
# including those through the real PC/SC stack (pcscd + vpcd + the virtual card).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARDWRIGHT_PCSC_TESTS=1      # PC/SC tests must run (and fail if pcscd is unusable)
export CARDWRIGHT_HSM_TESTS=1       # SoftHSM2 tests must run
export CARDWRIGHT_PG_TESTS=1        # PostgreSQL tests must run
export CARDWRIGHT_BROWSER_TESTS=1   # headless Chromium tests must run
export RUST_BACKTRACE=1
cargo test --workspace --features cardwright/pcsc --locked --no-fail-fast "$@"
