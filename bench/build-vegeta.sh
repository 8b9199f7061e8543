#!/usr/bin/env bash
# Build vegeta (the open-loop HTTP load generator of the benchmark's `openloop` scenario) at a
# pinned release with `go install`, into a cache outside git. Idempotent: a cached binary of the
# same version is reused.
#
#   bench/build-vegeta.sh            # prints the binary's path on the last line
#
# GOTOOLCHAIN=local: build with the Go on this machine, never fetch a toolchain. CGO_ENABLED=0: a
# static binary, no C compiler needed. `nice`: other work shares the cores. Modules are verified
# against the checksum database as `go install module@version` always does.
set -euo pipefail

MODULE="github.com/tsenart/vegeta/v12"
VERSION="v12.13.0"
# shellcheck source=bench/cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
OUT="$BENCH_CACHE/vegeta-$VERSION"
BIN="$OUT/bin/vegeta"

reuse_cached vegeta "$VERSION" "$BIN"
need_go vegeta

echo ">> building vegeta $VERSION with $(go version | cut -d' ' -f3) (a cold build takes 1-3 minutes on 2 cores)" >&2
start=$(date +%s)
rm -rf "$OUT/bin.tmp"
mkdir -p "$OUT/bin.tmp"
GOBIN="$OUT/bin.tmp" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false" \
  nice -n 10 go install -v -trimpath -ldflags="-s -w" "$MODULE@$VERSION" 2>&1 \
  | awk '{ n++; if (n % 20 == 0) { printf "   ... %d packages compiled (last: %s)\n", n, $0; fflush() } }' >&2
[[ -x "$OUT/bin.tmp/vegeta" ]] || { echo "!! go install $MODULE@$VERSION produced no binary" >&2; exit 1; }
rm -rf "$OUT/bin"
mv "$OUT/bin.tmp" "$OUT/bin"
echo ">> built $BIN in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
