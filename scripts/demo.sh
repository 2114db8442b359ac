#!/usr/bin/env bash
# The demo: builds cardwright and runs `cardwright demo`: the issuing platform walking a
# virtual card through write, rewrite and clear, then a gp-style tour of the card commands,
# each command printed with its output. Needs only Rust (no pcscd, no HSM).
# `scripts/demo.sh --bench` also runs the speed measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cardwright
exec target/release/cardwright demo "$@"
