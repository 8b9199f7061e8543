#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the e2e tests, offline except for the Go module proxy:
#   kube-apiserver, kube-controller-manager and kubectl of k8s.io/kubernetes ${K8S_VERSION} (one `go build`,
#   so the packages they share compile once; kubectl is the version the deploy guide's test runs) and
#   etcd ${ETCD_VERSION} (go.etcd.io/etcd/server/v3).
#
# `go install k8s.io/kubernetes/cmd/...@v1.x` cannot work: k8s.io/kubernetes requires its staging
# modules at v0.0.0 and replaces them with ./staging paths. The wrapper module in
# hack/controlplane/kubernetes requires k8s.io/kubernetes and replaces each staging module with its
# published v0.x release; hack/controlplane/etcd does the same for etcd's sibling modules.
#
# Binaries are cached outside git, keyed by version:
#   ${LMA_CACHE:-$HOME/.cache/llm-metrics-adapter}/controlplane/${K8S_VERSION}/{kube-apiserver,kube-controller-manager,kubectl,etcd}
# A warm run (all four present and answering --version) returns at once. GOMODCACHE and GOCACHE
# keep their defaults so later rebuilds reuse downloaded modules and compiled packages.
#
# Usage: hack/build-control-plane.sh           build, or reuse the cache
#        hack/build-control-plane.sh --regen   rewrite hack/controlplane/kubernetes/go.mod from the
#                                              upstream go.mod (after changing K8S_VERSION), then build
# The last line printed is the cache directory.
set -euo pipefail

K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
# Published staging modules of Kubernetes 1.x.y are tagged v0.x.y.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_MOD_DIR="${ROOT}/hack/controlplane/kubernetes"
ETCD_MOD_DIR="${ROOT}/hack/controlplane/etcd"
CACHE_DIR="${LMA_CACHE:-${HOME}/.cache/llm-metrics-adapter}/controlplane/${K8S_VERSION}"
BINARIES=(kube-apiserver kube-controller-manager kubectl etcd)

REGEN=0
for arg in "$@"; do
  case "${arg}" in
    --regen) REGEN=1 ;;
    *) echo "!! unknown argument: ${arg} (known: --regen)" >&2; exit 2 ;;
  esac
done

GO="${GO:-}"
if [[ -z "${GO}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
# The modules must be built by the installed toolchain, never a downloaded one.
export GOTOOLCHAIN=local CGO_ENABLED=0
# A caller's GOFLAGS=-mod=mod would let `go build` rewrite the committed go.sum; and the wrapper
# modules live inside this repository's git tree, whose state is no part of the binaries.
export GOFLAGS="-mod=readonly -buildvcs=false"

SCRIPT_START=${SECONDS}

say() { echo ">> $*"; }
die() { echo "!! $*" >&2; exit 1; }

# Echoes the elapsed time since $1 (a $SECONDS value) as "XmYYs".
elapsed() { local s=$(( SECONDS - $1 )); printf '%dm%02ds' $(( s / 60 )) $(( s % 60 )); }

# True when every cached binary exists and answers --version with the expected version.
cache_is_complete() {
  local b out
  for b in "${BINARIES[@]}"; do
    [[ -x "${CACHE_DIR}/${b}" ]] || return 1
  done
  out="$("${CACHE_DIR}/kube-apiserver" --version 2>&1)" || return 1
  [[ "${out}" == *"${K8S_VERSION}"* ]] || return 1
  out="$("${CACHE_DIR}/kube-controller-manager" --version 2>&1)" || return 1
  [[ "${out}" == *"${K8S_VERSION}"* ]] || return 1
  out="$("${CACHE_DIR}/kubectl" version --client 2>&1)" || return 1
  [[ "${out}" == *"${K8S_VERSION}"* ]] || return 1
  out="$("${CACHE_DIR}/etcd" --version 2>&1)" || return 1
  [[ "${out}" == *"${ETCD_VERSION#v}"* ]] || return 1
}

if [[ ${REGEN} -eq 0 ]] && cache_is_complete; then
  say "reusing cached control plane in ${CACHE_DIR} (kube-apiserver ${K8S_VERSION}, etcd ${ETCD_VERSION})"
  echo "${CACHE_DIR}"
  exit 0
fi

{ [[ -x "${GO}" ]] && "${GO}" version >/dev/null 2>&1; } \
  || die "Go toolchain not found or not working (looked for 'go' on PATH and /usr/local/go/bin/go, or \$GO); install Go >= 1.26"
say "using $("${GO}" version)"

# Prints the path of the upstream k8s.io/kubernetes go.mod (downloads it if needed).
upstream_gomod() {
  local json
  json="$(cd "${K8S_MOD_DIR}" && "${GO}" mod download -json "k8s.io/kubernetes@${K8S_VERSION}")" \
    || die "kubernetes: cannot download k8s.io/kubernetes@${K8S_VERSION} from the Go module proxy"
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"${json}"
}

# Prints "<module> => <module> <staging version>" for every ./staging replace of the upstream go.mod.
staging_replaces() {
  sed -n '/^replace (/,/^)/p' "$1" | awk -v v="${STAGING_VERSION}" '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 " => " $1 " " v }'
}

UPSTREAM_GOMOD="$(upstream_gomod)"
[[ -f "${UPSTREAM_GOMOD}" ]] || die "kubernetes: go mod download gave no go.mod for k8s.io/kubernetes@${K8S_VERSION}"
WANT_REPLACES="$(staging_replaces "${UPSTREAM_GOMOD}")"
WANT_GODEBUG="$(grep '^godebug' "${UPSTREAM_GOMOD}" || true)"
[[ -n "${WANT_REPLACES}" ]] || die "kubernetes: no ./staging replace lines found in ${UPSTREAM_GOMOD}"

if [[ ${REGEN} -eq 1 ]]; then
  say "regenerating ${K8S_MOD_DIR}/go.mod from k8s.io/kubernetes@${K8S_VERSION}"
  {
    echo "// Wrapper module that builds kube-apiserver, kube-controller-manager and kubectl of"
    echo "// k8s.io/kubernetes from published modules. Generated by hack/build-control-plane.sh --regen."
    echo "module llm-metrics-adapter/hack/controlplane/kubernetes"
    echo
    grep '^go ' "${UPSTREAM_GOMOD}"
    echo
    if [[ -n "${WANT_GODEBUG}" ]]; then echo "${WANT_GODEBUG}"; echo; fi
    printf 'tool (\n\tk8s.io/kubernetes/cmd/kube-apiserver\n\tk8s.io/kubernetes/cmd/kube-controller-manager\n\tk8s.io/kubernetes/cmd/kubectl\n)\n\n'
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    sed 's/^/\t/' <<<"${WANT_REPLACES}"
    echo ")"
  } >"${K8S_MOD_DIR}/go.mod"
  rm -f "${K8S_MOD_DIR}/go.sum"
  (cd "${K8S_MOD_DIR}" && GOFLAGS=-mod=mod "${GO}" mod tidy) || die "kubernetes: go mod tidy failed"
fi

# The committed wrapper must match the upstream replace block and godebug line exactly, or the
# binaries would be built against different staging code than the release.
HAVE_REPLACES="$(sed -n '/^replace (/,/^)/p' "${K8S_MOD_DIR}/go.mod" | awk '$2 == "=>" { print $1 " => " $3 " " $4 }')"
if [[ "$(sort <<<"${HAVE_REPLACES}")" != "$(sort <<<"${WANT_REPLACES}")" ]]; then
  diff <(sort <<<"${WANT_REPLACES}") <(sort <<<"${HAVE_REPLACES}") >&2 || true
  die "kubernetes: ${K8S_MOD_DIR}/go.mod replace block differs from k8s.io/kubernetes@${K8S_VERSION}; run $0 --regen"
fi
if [[ -n "${WANT_GODEBUG}" ]] && ! grep -qxF "${WANT_GODEBUG}" "${K8S_MOD_DIR}/go.mod"; then
  die "kubernetes: ${K8S_MOD_DIR}/go.mod lacks '${WANT_GODEBUG}'; run $0 --regen"
fi
say "wrapper module matches k8s.io/kubernetes@${K8S_VERSION}: $(wc -l <<<"${WANT_REPLACES}") staging modules pinned to ${STAGING_VERSION}"

# The commit the release tag points at, for /version's gitCommit (empty if the proxy gave no origin).
K8S_COMMIT="$(cd "${K8S_MOD_DIR}" && "${GO}" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
  | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]\{40\}\)",\{0,1\}$/\1/p' | sed -n 1p)"
K8S_MAJOR="${K8S_VERSION#v}"; K8S_MAJOR="${K8S_MAJOR%%.*}"
K8S_MINOR="${K8S_VERSION#v*.}"; K8S_MINOR="${K8S_MINOR%%.*}"
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${K8S_MAJOR} -X ${pkg}.gitMinor=${K8S_MINOR}"
  LDFLAGS+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${BUILD_DATE}"
  if [[ -n "${K8S_COMMIT}" ]]; then LDFLAGS+=" -X ${pkg}.gitCommit=${K8S_COMMIT}"; fi
done

mkdir -p "${CACHE_DIR}"
# Build into a scratch dir and move into place only on success: a half-built cache never looks warm.
STAGE="$(mktemp -d "${CACHE_DIR}/.build.XXXXXX")"
TICKER_PID=""
cleanup() {
  if [[ -n "${TICKER_PID}" ]]; then kill "${TICKER_PID}" 2>/dev/null || true; fi
  rm -rf "${STAGE}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs "go build" for component $1 in module dir $2 with the remaining arguments, printing the
# elapsed time every 30 s because a cold build prints nothing for many minutes.
go_build() {
  local component="$1" dir="$2"; shift 2
  local start=${SECONDS} rc=0
  # sleep must not hold our stdout: a killed ticker's orphaned sleep would keep a pipe open.
  ( while sleep 30 </dev/null >/dev/null 2>&1; do echo "   ... still building ${component}: $(elapsed "${start}") elapsed"; done ) &
  TICKER_PID=$!
  (cd "${dir}" && nice -n 10 "${GO}" build -trimpath "$@") || rc=$?
  kill "${TICKER_PID}" 2>/dev/null || true
  wait "${TICKER_PID}" 2>/dev/null || true
  TICKER_PID=""
  [[ ${rc} -eq 0 ]] || die "${component}: go build failed (exit ${rc}) after $(elapsed "${start}"); see the output above"
  say "${component} built in $(elapsed "${start}")"
}

say "building kube-apiserver, kube-controller-manager and kubectl ${K8S_VERSION} and etcd ${ETCD_VERSION} into ${CACHE_DIR}"
say "a cold build downloads a few hundred modules and compiles for many minutes (about 15-30 on 2 cores); later runs reuse the cache"

go_build "etcd ${ETCD_VERSION}" "${ETCD_MOD_DIR}" -o "${STAGE}/etcd" go.etcd.io/etcd/server/v3
go_build "kube-apiserver+kube-controller-manager+kubectl ${K8S_VERSION}" "${K8S_MOD_DIR}" -ldflags "${LDFLAGS}" -o "${STAGE}/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl

for b in "${BINARIES[@]}"; do
  [[ -x "${STAGE}/${b}" ]] || die "${b}: go build succeeded but produced no binary"
  if [[ "${b}" == kubectl ]]; then version_args=(version --client); else version_args=(--version); fi
  "${STAGE}/${b}" "${version_args[@]}" >/dev/null 2>&1 || die "${b}: built binary does not run ${version_args[*]}"
  mv -f "${STAGE}/${b}" "${CACHE_DIR}/${b}"
done
cache_is_complete || die "control plane: cached binaries do not report ${K8S_VERSION} / etcd ${ETCD_VERSION}"

"${CACHE_DIR}/kube-apiserver" --version
# sed, not head: under pipefail, etcd would die of SIGPIPE when head stops reading.
"${CACHE_DIR}/etcd" --version | sed -n 1p
say "control plane built in $(elapsed "${SCRIPT_START}")"
echo "${CACHE_DIR}"
