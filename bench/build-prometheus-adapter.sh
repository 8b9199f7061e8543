#!/usr/bin/env bash
# Build prometheus-adapter (the peer we benchmark against) from the Go module proxy at a pinned
# release, into a cache outside git. Idempotent: a cached binary of the same version is reused.
#
#   bench/build-prometheus-adapter.sh            # prints the binary's path on the last line
#   (the version is the one bench/prometheus-adapter/go.mod requires)
#
# The wrapper module bench/prometheus-adapter (go.mod and go.sum committed) requires the release;
# building from it needs no version listing from the proxy and verifies every module against
# go.sum. GOTOOLCHAIN=local: build with the Go on this machine, never fetch a toolchain.
# CGO_ENABLED=0: a static binary, no C compiler needed. `nice`: other work shares the two cores.
set -euo pipefail

MODDIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prometheus-adapter"
VERSION="$(awk '$1 == "sigs.k8s.io/prometheus-adapter" { print $2 }' "$MODDIR/go.mod")"
[[ -n "$VERSION" ]] || { echo "!! no prometheus-adapter version in $MODDIR/go.mod" >&2; exit 1; }
# shellcheck source=bench/cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
OUT="$BENCH_CACHE/prometheus-adapter-$VERSION"
BIN="$OUT/bin/adapter"

reuse_cached prometheus-adapter "$VERSION" "$BIN"
need_go prometheus-adapter

mkdir -p "$OUT"
echo ">> building prometheus-adapter $VERSION with $(go version | cut -d' ' -f3) (a cold build takes 3-10 minutes on 2 cores)" >&2
start=$(date +%s)
mkdir -p "$OUT/bin.tmp"
(cd "$MODDIR" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
  nice -n 10 go build -v -trimpath -ldflags="-s -w" -o "$OUT/bin.tmp/adapter" sigs.k8s.io/prometheus-adapter/cmd/adapter) 2>&1 \
  | awk '{ n++; if (n % 50 == 0) { printf "   ... %d packages compiled (last: %s)\n", n, $0; fflush() } }' >&2
rm -rf "$OUT/bin"
mv "$OUT/bin.tmp" "$OUT/bin"
echo ">> built $BIN in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
