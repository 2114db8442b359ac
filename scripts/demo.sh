#!/usr/bin/env bash
# The demo: builds cardwright and walks a virtual card through issuance-style card
# management, printing each command and its output. Needs only Rust (no pcscd, no HSM).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cardwright
cw=target/release/cardwright
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
state="$work/card.json"
cap=crates/gp/tests/data/Empty_0102030405_8d5ac9e2_2.2.1.cap

step() { echo; echo "\$ cardwright $*"; "$cw" "$@"; }

echo "=== Card issuance: platform on SQLite + software key store, a virtual card (write, rewrite, clear)"
"$cw" demo
echo
echo "=== Card management like gp, on a virtual card"

echo "A new virtual card (SCP03, GP test keys 40..4F), state in $state"
step sim create --state "$state"
step card --sim "$state" info
step card --sim "$state" list
echo; echo "# The issuer creates a supplementary security domain for a bank, with Authorized Management"
step card --sim "$state" create-domain A00000015153534401 --privs am
echo; echo "# The SSD's initial keys are replaced by the bank's AES keys (key version 0x31)"
step card --sim "$state" --sd A00000015153534401 lock --new-key 000102030405060708090A0B0C0D0E0F --new-keyver 0x31
echo; echo "# The bank loads and installs its applet into its SSD, with C-MAC and C-DECRYPTION"
step card --sim "$state" --sd A00000015153534401 --key 000102030405060708090A0B0C0D0E0F \
     --security-level mac+enc install "$cap" --create 01020304050607080901
step card --sim "$state" store-data A00000015153534401 DF0103010203
step card --sim "$state" list
echo; echo "# Trying the old keys on the SSD: refused before EXTERNAL AUTHENTICATE (no failure counted)"
"$cw" card --sim "$state" --sd A00000015153534401 list || true
step card --sim "$state" delete --related 0102030405
step card --sim "$state" delete A00000015153534401
step card --sim "$state" list
echo; echo "Speed:"
"$cw" bench --runs 5
