#!/usr/bin/env bash
# Property-based API testing of the HTTP APIs of `cardwright serve` against their OpenAPI
# documents: payment and issuance, and the SSD platforms of issue #10: the card issuer's partner
# API (`serve --role ci`, HTTPS; its partner routes with a registered partner's client
# certificate, its operator routes with a bearer token) and the application provider's API
# (`serve --role ap`), and the OTA API of issue 12 (`serve --ota` with operator tokens), with Schemathesis and all its checks: any 5xx, any answer
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
CI_PID=""
AP_PID=""
OTA_PID=""
cleanup() {
    for pid in "$SERVE_PID" "$CI_PID" "$AP_PID" "$OTA_PID"; do
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    done
    [ -n "${ST_KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
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

# Starts `cardwright serve ARGS…` logging to $WORK/NAME.{out,err}; sets PID and URL.
start() {
    local name=$1
    shift
    : >"$WORK/$name.out"   # exists before the server writes to it
    "$BIN" serve "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PID=$!
    URL=""
    for _ in $(seq 1 100); do
        URL=$(sed -n 's/^cardwright serve: listening on \(https\{0,1\}:[^ ]*\)$/\1/p' "$WORK/$name.out")
        [ -n "$URL" ] && break
        if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/$name.err" >&2; exit 1; fi
        sleep 0.1
    done
    [ -n "$URL" ] || { echo "cardwright serve ($name) did not start" >&2; cat "$WORK/$name.err" >&2; exit 1; }
}

start serve --listen 127.0.0.1:0 --issuance
SERVE_PID=$PID
BASE=$URL

# run NAME BASE DOC TOKEN [schemathesis options…]
run() {
    local name=$1 base=$2 doc=$3 token=$4
    shift 4
    echo "== schemathesis: $name API ($base$doc)"
    "$VENV/bin/schemathesis" run "$base$doc" \
        --url "$base" \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --max-examples "$MAX_EXAMPLES" \
        --header "Authorization: Bearer $token" \
        --seed 1 \
        --no-color \
        "$@"
}
status=0
run payment "$BASE" /api/openapi.json "$ADMIN_TOKEN" || status=1
run issuance "$BASE" /api/openapi-issuance.json "$OPERATOR_TOKEN" || status=1

# The OTA API (issue 12): `serve --ota` with the operator token, its own database. The ESME
# keeps reconnecting to a closed port (9); the HTTP API does not need the SMSC.
CARDWRIGHT_DB="sqlite:$WORK/ota.db" "$BIN" tenant create --id issuer --name Issuer --role ci >/dev/null
start ota --ota --smpp smpp://st:st@127.0.0.1:9 --listen 127.0.0.1:0 --db "sqlite:$WORK/ota.db" \
    --keystore "file:$WORK/keys.json"
OTA_PID=$PID
run OTA "$URL" /api/openapi-ota.json "$OPERATOR_TOKEN" || status=1

# The SSD platforms (issue #10): certificates made here with openssl (P-256): the card
# issuer's server CA and certificate, the partner's root CA and client certificate, the
# partner's transport key.
PKI="$WORK/pki"
mkdir -p "$PKI"
(
    cd "$PKI"
    key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
    key server-ca.key
    openssl req -x509 -new -key server-ca.key -out server-ca.pem -subj "/CN=st CI server CA" \
        -days 2 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    key server.key
    openssl req -new -key server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n" >server.ext
    openssl x509 -req -in server.csr -CA server-ca.pem -CAkey server-ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile server.ext 2>/dev/null
    key partner-root.key
    openssl req -x509 -new -key partner-root.key -out partner-root.pem -subj "/CN=st partner root" \
        -days 2 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    key partner.key
    openssl req -new -key partner.key -out partner.csr -subj "/CN=st partner platform" 2>/dev/null
    printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n" >partner.ext
    openssl x509 -req -in partner.csr -CA partner-root.pem -CAkey partner-root.key -CAcreateserial \
        -out partner.pem -days 2 -extfile partner.ext 2>/dev/null
    key transport.key
    openssl ec -in transport.key -pubout -out transport.pem 2>/dev/null
)
# The card issuer: its own database and key store, the partner registered.
(
    export CARDWRIGHT_DB="sqlite:$WORK/ci.db" CARDWRIGHT_KEYSTORE="file:$WORK/ci-keys.json"
    "$BIN" tenant create --id issuer --name Issuer --role ci >/dev/null
    "$BIN" partner add --id bank1 --cert "$PKI/partner-root.pem" --ssd-aid-prefix A000000151BA01 \
        --cards 4711000000000000-4711000000999999 --transport-key "$PKI/transport.pem" >/dev/null
)
start ci --role ci --listen 127.0.0.1:0 --db "sqlite:$WORK/ci.db" --keystore "file:$WORK/ci-keys.json" \
    --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --receipt-key 71717171717171717171717171717171
CI_PID=$PID
CI_URL=${URL/127.0.0.1/localhost}
# The application provider: its database and key store, its link to the card issuer.
start ap --role ap --listen 127.0.0.1:0 --db "sqlite:$WORK/ap.db" --keystore "file:$WORK/ap-keys.json" \
    --ci "$CI_URL" --client-cert "$PKI/partner.pem" --client-key "$PKI/partner.key" \
    --ci-ca "$PKI/server-ca.pem" --partner-id bank1
AP_PID=$PID
AP_URL=$URL
# The partner routes see the partner's client certificate, the operator routes the token.
# Revoking the partner (which Schemathesis finds by its id in the list) ends its client
# certificate's use: that route runs last, alone.
CI_TLS=(--tls-verify "$PKI/server-ca.pem" --request-cert "$PKI/partner.pem" --request-cert-key "$PKI/partner.key")
run "card issuer's partner" "$CI_URL" /api/openapi-partner.json "$OPERATOR_TOKEN" \
    "${CI_TLS[@]}" --exclude-path-regex '/revoke$' || status=1
run "card issuer's partner (revocation)" "$CI_URL" /api/openapi-partner.json "$OPERATOR_TOKEN" \
    "${CI_TLS[@]}" --include-path-regex '/revoke$' || status=1
run "application provider's" "$AP_URL" /api/openapi-ap.json "$OPERATOR_TOKEN" || status=1

for name in serve ota ci ap; do
    if grep -q "panicked" "$WORK/$name.err"; then
        echo "the server ($name) panicked:" >&2
        grep -A3 panicked "$WORK/$name.err" >&2
        status=1
    fi
done
exit $status
