#!/usr/bin/env bash
# Property-based API testing of both HTTP APIs of `cardwright serve` (payment and issuance)
# against their OpenAPI documents, with Schemathesis and all its checks: any 5xx, any answer
# that does not match the schema, any undocumented status code or content type, and any
# request the schema excludes but the server accepts fail. Excluded: positive_data_acceptance
# (a schema-valid request may still be refused for what no schema can say: a signature that
# does not verify, an unregistered package, a tampered payment).
#
# Standalone after `cargo build` (it uses target/debug/cardwright, building it if missing):
#   scripts/schemathesis.sh            # ~1-3 minutes
#   ST_MAX_EXAMPLES=200 scripts/schemathesis.sh
# Schemathesis is installed from PyPI into target/venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${ST_MAX_EXAMPLES:-25}"
VENV=target/venv
ST_VERSION="4.*"

if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
    python3 -m venv --clear "$VENV"   # --clear: a moved venv has dead script paths
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

BIN=target/debug/cardwright
cargo build -p cardwright --locked --quiet   # a no-op when up to date; never a stale binary

WORK=$(mktemp -d)
SERVE_PID=""
cleanup() {
    if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

ADMIN_TOKEN="schemathesis-admin-token-000001"
OPERATOR_TOKEN="schemathesis-operator-token-0001"
export CARDWRIGHT_DB="sqlite:$WORK/platform.db"
export CARDWRIGHT_MASTER_KEY
CARDWRIGHT_MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export CARDWRIGHT_KEYSTORE="file:$WORK/keys.json"
export CARDWRIGHT_ADMIN_TOKEN="$ADMIN_TOKEN"
export CARDWRIGHT_OPERATOR_TOKENS="st-operator=$OPERATOR_TOKEN"
export RUST_LOG=warn

# A tenant and a category, so that the issuance routes reach the domain's checks.
"$BIN" tenant create --id issuer --name Issuer --role ci >/dev/null
"$BIN" category create --id gold --tenant issuer >/dev/null

"$BIN" serve --listen 127.0.0.1:0 --issuance >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE_PID=$!
BASE=""
for _ in $(seq 1 100); do
    BASE=$(sed -n 's/^cardwright serve: listening on \(http:[^ ]*\)$/\1/p' "$WORK/serve.out")
    [ -n "$BASE" ] && break
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then cat "$WORK/serve.err" >&2; exit 1; fi
    sleep 0.1
done
[ -n "$BASE" ] || { echo "cardwright serve did not start" >&2; cat "$WORK/serve.err" >&2; exit 1; }

run() {
    local name=$1 doc=$2 token=$3
    echo "== schemathesis: $name API ($BASE$doc)"
    "$VENV/bin/schemathesis" run "$BASE$doc" \
        --url "$BASE" \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --max-examples "$MAX_EXAMPLES" \
        --header "Authorization: Bearer $token" \
        --seed 1 \
        --no-color
}
status=0
run payment /api/openapi.json "$ADMIN_TOKEN" || status=1
run issuance /api/openapi-issuance.json "$OPERATOR_TOKEN" || status=1
if grep -q "panicked" "$WORK/serve.err"; then
    echo "the server panicked:" >&2
    grep -A3 panicked "$WORK/serve.err" >&2
    status=1
fi
exit $status
