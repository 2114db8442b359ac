#!/bin/bash
# Campaign throughput with N nodes on one PostgreSQL database (the figures in the README):
#   cargo build --release -p cardwright && scripts/campaign-nodes.sh N [CARDS]
# Each node is a `cardwright campaign run --virtual --workers 4` process (the same workers as
# `serve --campaign-workers`); prints cards/s, each node's share and peak memory, and the
# schema's size. PostgreSQL: $CARDWRIGHT_PG_URL (default the local test database); the schema
# cwbench<N> is dropped and made again.
set -euo pipefail
N=${1:?number of nodes}
CARDS=${2:-3000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/cardwright
PG=${CARDWRIGHT_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=cwbench$N
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cd "$DIR"
psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
export CARDWRIGHT_DB="$PG?schema=$SCHEMA&pool=8"
export CARDWRIGHT_KEYSTORE=file:$DIR/keys.json CARDWRIGHT_MASTER_KEY=$(openssl rand -hex 32)
"$BIN" keys generate-base --category gold >/dev/null
"$BIN" tenant create --id issuer --name ACME --role ci >/dev/null 2>&1
"$BIN" category create --id gold --tenant issuer >/dev/null
LAST=$((4711000000000000 + CARDS - 1))
ID=$("$BIN" campaign create --category gold --range 4711000000000000..$LAST | sed -E 's/^campaign ([0-9]+):.*/\1/')
"$BIN" campaign start "$ID" >/dev/null
T0=$(date +%s.%N)
for i in $(seq 1 "$N"); do
    /usr/bin/time -f "node $i: peak memory %M KB" "$BIN" campaign run --virtual --workers 4 >"node$i.out" 2>"node$i.err" &
done
wait
T1=$(date +%s.%N)
echo "$N node(s), $CARDS cards in $(echo "$T1 - $T0" | bc) s = $(echo "$CARDS / ($T1 - $T0)" | bc) cards/s"
for i in $(seq 1 "$N"); do echo "node $i: $(tail -1 "node$i.out")"; grep "peak memory" "node$i.err"; done
"$BIN" campaign status "$ID" | head -1
echo "database: $(psql "$PG" -qAtc "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$SCHEMA' AND c.relkind = 'r'")"
