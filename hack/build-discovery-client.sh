#!/usr/bin/env bash
# Builds hack/discovery-client (client-go's discovery client and k8s.io/apiserver's aggregated-discovery
# builder, v0.35.4: the control plane's release) with the installed Go toolchain and modules from the
# Go module proxy.
#
# The binary is cached outside git, keyed by a hash of the module's sources:
#   ${LMA_CACHE:-$HOME/.cache/llm-metrics-adapter}/tools/discovery-client-<hash>
# A warm run returns at once. The last line printed is the binary's path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD_DIR="${ROOT}/hack/discovery-client"
TOOLS_DIR="${LMA_CACHE:-${HOME}/.cache/llm-metrics-adapter}/tools"

say() { echo ">> $*"; }
die() { echo "!! $*" >&2; exit 1; }

GO="${GO:-}"
if [[ -z "${GO}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
export GOTOOLCHAIN=local CGO_ENABLED=0
# The committed go.sum is the source of truth: never rewrite it while building.
export GOFLAGS="-mod=readonly -buildvcs=false"

HASH="$(cat "${MOD_DIR}/go.mod" "${MOD_DIR}/go.sum" "${MOD_DIR}/main.go" | sha256sum | cut -c1-16)"
BINARY="${TOOLS_DIR}/discovery-client-${HASH}"
if [[ -x "${BINARY}" ]]; then
  say "reusing ${BINARY}"
  echo "${BINARY}"
  exit 0
fi

{ [[ -x "${GO}" ]] && "${GO}" version >/dev/null 2>&1; } \
  || die "Go toolchain not found or not working (looked for 'go' on PATH and /usr/local/go/bin/go, or \$GO)"
say "building the discovery client with $("${GO}" version)"
mkdir -p "${TOOLS_DIR}"
STAGE="$(mktemp "${TOOLS_DIR}/.discovery-client.XXXXXX")"
trap 'rm -f "${STAGE}"' EXIT
(cd "${MOD_DIR}" && nice -n 10 "${GO}" build -trimpath -ldflags "-s -w" -o "${STAGE}" .) \
  || die "discovery-client: go build failed; see the output above"
mv -f "${STAGE}" "${BINARY}"
trap - EXIT
say "built ${BINARY}"
echo "${BINARY}"
