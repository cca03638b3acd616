#!/bin/bash
# Builds the integration test binaries (package vmctl-tests) and copies each one to OUTDIR under its
# test target's name (tests/tests/tiny_guests.rs -> OUTDIR/tiny_guests, and so on for every test file),
# so they run without cargo, e.g. inside the test host. There they find vmctl and the tiny guests
# through $VMCTL and $VMCTL_TEST_GUESTS, or next to themselves: OUTDIR/../bin/vmctl and OUTDIR/guests
# (the build/ layout: build/bin/vmctl, build/tests/guests).
# Usage: resources/build-testbins.sh OUTDIR
set -euo pipefail
die() { echo "build-testbins: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
json=$(mktemp)
trap 'rm -f "$json"' EXIT
(cd "$root" && ${CARGO:-cargo} test --release -p vmctl-tests --no-run --message-format=json) >"$json" \
  || die "cargo test --no-run failed"
# One "name<TAB>executable" line per integration test target (kind "test"; not the lib's unit tests).
# (sed rather than jq: cargo's JSON messages are one object a line, with these fields in this order.)
pairs=$(grep '"reason":"compiler-artifact"' "$json" | grep '"target":{"kind":\["test"\]' \
  | sed -nE 's/.*"target":\{[^}]*"name":"([^"]+)".*"executable":"([^"]+)".*/\1\t\2/p' || true)
[ -n "$pairs" ] || die "cargo built no integration test binaries"
n=0
while IFS=$'\t' read -r name exe; do
  install -m 755 "$exe" "$out/$name.tmp"
  mv -f "$out/$name.tmp" "$out/$name"
  n=$((n + 1))
done <<<"$pairs"
echo "build-testbins: $n test binaries in $out: $(cut -f1 <<<"$pairs" | tr '\n' ' ')"
