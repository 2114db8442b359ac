#!/usr/bin/env bash
# One minimum Rust version: the workspace's `rust-version` (Cargo.toml), which every crate
# inherits (`rust-version.workspace = true`), is the one the README's Install section states,
# and no locked dependency needs a newer Rust. (That the code itself uses no newer standard
# library API is checked by clippy's `incompatible_msrv` lint, run by scripts/test.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-rust-version: $*" >&2; exit 1; }

msrv=$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version *= *"\([0-9.]*\)"/\1/p' Cargo.toml)
[ -n "$msrv" ] || fail "no rust-version in [workspace.package] of Cargo.toml"

for toml in crates/*/Cargo.toml; do
  grep -q '^rust-version.workspace = true$' "$toml" \
    || fail "$toml: add 'rust-version.workspace = true' (one rust-version for the workspace)"
done

grep -q "Rust $msrv+" README.md \
  || fail "README.md must say 'Rust $msrv+' (Cargo.toml's rust-version); it says: $(grep -o 'Rust [0-9.]*+' README.md | head -1)"

host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --locked --filter-platform "$host" | python3 -c '
import json, sys
msrv = tuple(int(x) for x in sys.argv[1].split("."))
meta = json.load(sys.stdin)
used = {n["id"] for n in meta["resolve"]["nodes"]}
newer = sorted(
    (p["rust_version"], p["name"], p["version"])
    for p in meta["packages"]
    if p["id"] in used and p.get("rust_version")
    and tuple(int(x) for x in p["rust_version"].split("."))[:len(msrv)] > msrv
)
for rv, name, version in newer:
    print(f"check-rust-version: {name} {version} (locked) needs Rust {rv}, above rust-version {sys.argv[1]}", file=sys.stderr)
sys.exit(1 if newer else 0)
' "$msrv"
echo "rust-version $msrv: Cargo.toml, every crate, README.md and Cargo.lock agree"
