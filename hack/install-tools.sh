#!/usr/bin/env bash
# Builds the deploy tooling the manifest tests use, from the Go module proxy, into a cache outside git:
#   helm      helm.sh/helm/v3/cmd/helm                 ${HELM_VERSION}
#   kustomize sigs.k8s.io/kustomize/kustomize/v5       ${KUSTOMIZE_VERSION}
#
#   ${LMA_CACHE:-$HOME/.cache/llm-metrics-adapter}/tools/{helm,kustomize}
#
# Idempotent: a tool that is present and reports the pinned version is not rebuilt. GOMODCACHE
# and GOCACHE keep their defaults so a rebuild reuses downloaded modules and compiled packages
# (helm shares most of its dependencies with the control plane built by build-control-plane.sh).
#
# Usage: hack/install-tools.sh [helm|kustomize]...   (no argument: all of them)
# The last line printed is the tools directory.
set -euo pipefail

HELM_VERSION=v3.22.0
KUSTOMIZE_VERSION=v5.8.1

TOOLS_DIR="${LMA_CACHE:-${HOME}/.cache/llm-metrics-adapter}/tools"

GO="${GO:-}"
if [[ -z "${GO}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
# Build with the installed toolchain; never fetch another one.
export GOTOOLCHAIN=local CGO_ENABLED=0
# `go install pkg@version` resolves the module's own go.mod; a caller's -mod=readonly or
# -mod=vendor would not apply and only confuses the error messages.
export GOFLAGS="-mod=mod -buildvcs=false"

say() { echo ">> $*"; }
die() { echo "!! $*" >&2; exit 1; }

# has_version BINARY EXPECTED ARGS... : true when BINARY runs and its output mentions EXPECTED.
has_version() {
  local bin="$1" want="$2" out
  shift 2
  [[ -x "${bin}" ]] || return 1
  out="$("${bin}" "$@" 2>&1)" || return 1
  [[ "${out}" == *"${want}"* ]]
}

install_helm() {
  local bin="${TOOLS_DIR}/helm" gomod k8s_minor ldflags
  # helm's Makefile stamps the Kubernetes version it assumes for `helm template` (and checks
  # charts' kubeVersion against) from its client-go version: v0.Y.Z -> 1.Y. `go install` alone
  # leaves the library default (1.20), which rejects charts that require a newer cluster.
  gomod="$("${GO}" mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "${gomod}" ]] || die "could not download helm.sh/helm/v3@${HELM_VERSION}"
  k8s_minor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "${gomod}" | sed -n 1p)"
  [[ -n "${k8s_minor}" ]] || die "no k8s.io/client-go requirement in ${gomod}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  for pkg in pkg/chartutil pkg/lint/rules; do
    ldflags+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${k8s_minor}"
  done
  if has_version "${bin}" "${HELM_VERSION}" version --short \
    && [[ "$(cat "${bin}.ldflags" 2>/dev/null)" == "${ldflags}" ]]; then
    say "helm ${HELM_VERSION} already in ${TOOLS_DIR}"
    return
  fi
  say "building helm ${HELM_VERSION} for Kubernetes 1.${k8s_minor} (first build takes several minutes on 2 cores)"
  GOBIN="${TOOLS_DIR}" "${GO}" install -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  has_version "${bin}" "${HELM_VERSION}" version --short || die "built helm does not report ${HELM_VERSION}"
  echo "${ldflags}" > "${bin}.ldflags"
}

install_kustomize() {
  local bin="${TOOLS_DIR}/kustomize"
  if has_version "${bin}" "${KUSTOMIZE_VERSION}" version; then
    say "kustomize ${KUSTOMIZE_VERSION} already in ${TOOLS_DIR}"
    return
  fi
  say "building kustomize ${KUSTOMIZE_VERSION}"
  GOBIN="${TOOLS_DIR}" "${GO}" install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=${KUSTOMIZE_VERSION}" \
    "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
  has_version "${bin}" "${KUSTOMIZE_VERSION}" version || die "built kustomize does not report ${KUSTOMIZE_VERSION}"
}

[[ -x "${GO}" ]] || die "Go toolchain not found (looked for 'go' on PATH and /usr/local/go/bin/go); install Go >= 1.24"
mkdir -p "${TOOLS_DIR}"

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm kustomize)
for tool in "${tools[@]}"; do
  case "${tool}" in
    helm) install_helm ;;
    kustomize) install_kustomize ;;
    *) die "unknown tool: ${tool} (known: helm, kustomize)" ;;
  esac
done
echo "${TOOLS_DIR}"
