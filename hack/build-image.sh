#!/usr/bin/env bash
# Builds the llm-metrics-adapter image from the Dockerfile with buildah, with no network in the
# image build itself:
#
#   1. wheels  the project's wheel (pip wheel) and a binary wheel of every runtime dependency for
#              CPython 3.11 on manylinux/glibc <= 2.36 (Debian bookworm) and this machine's
#              architecture (pip download), into hack/image/wheels/, which the build context
#              includes. Dependencies are fetched again only when pyproject.toml changes; the
#              project's wheel is removed again after the build.
#   2. base    LMA_IMAGE_BASE if set; else python:3.11-slim-bookworm if it is in local storage or
#              can be pulled (a failed pull is not tried again for a day); else a minimal bookworm root filesystem with python3.11,
#              ca-certificates, tzdata and libstdc++6 (no compilers, no pip, no apt, no docs), bootstrapped with
#              Debian's mmdebstrap from the host's apt sources and imported as
#              localhost/lma-base:bookworm-py3.11. Its tarball is cached, keyed by a hash of the
#              recipe below. LMA_IMAGE_BASE=local always uses that base.
#   3. image   buildah build --layers --build-arg PYTHON_IMAGE=<base>
#              -t localhost/llm-metrics-adapter:<version> .
#
# Container storage and engine settings are the project's own, written under
# ${LMA_CACHE:-~/.cache/llm-metrics-adapter}/image/ and passed through CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF, so nothing of the machine's configuration changes. What this machine
# needs (and what `env` writes): overlay storage as root (vfs where the cache is on overlayfs),
# the cgroupfs manager, a file events log, runc (crun refuses hybrid cgroup v1/v2 hosts), no
# network by default (a container gets its own namespace with loopback only), and rlimits no
# higher than the host's (without CAP_SYS_RESOURCE, podman's default 1048576 files fails).
#
# Usage: hack/build-image.sh [build]   install what is missing, build; last line: the image
#        hack/build-image.sh env       write the container configuration; print it as KEY=VALUE
#                                      lines (eval "$(hack/build-image.sh env)" before podman)
#        hack/build-image.sh packages  only install the Debian packages it needs
#
# PIP_PYTHON: the Python whose pip makes the wheels (default: .venv/bin/python, else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LMA_CACHE:-${HOME}/.cache/llm-metrics-adapter}/image"
CONF_DIR="${CACHE}/containers"
LOG_DIR="${CACHE}/logs"
WHEELS="${ROOT}/hack/image/wheels"
IMAGE_REPO="localhost/llm-metrics-adapter"
DEFAULT_BASE="docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE="localhost/lma-base:bookworm-py3.11"
# command:Debian package. ip (iproute2) brings up the loopback of the image tier's pod namespace.
PACKAGES=(buildah:buildah podman:podman runc:runc mmdebstrap:mmdebstrap ip:iproute2)

# ----------------------------------------------------------------------------- the local base
# Everything that decides the local base's content; its hash names the cached tarball.
BASE_SUITE=bookworm
# libstdc++6: grpcio (Cloud Monitoring) links against it; python:3.11-slim-bookworm has it too.
BASE_INCLUDE=python3.11-minimal,libpython3.11-stdlib,ca-certificates,tzdata,libstdc++6
# Essential packages nothing runs in the image (only dpkg's maintainer scripts did), and the perl
# that usrmerge pulled in. Left: libc, python3.11 and its libraries, coreutils, dash (the build's
# RUN steps), grep/sed, dpkg and its database (what image scanners read).
BASE_PURGE="usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl
  perl-modules-5.36 libperl5.36 perl-base debconf bash util-linux util-linux-extra login tar
  diffutils findutils sysvinit-utils hostname ncurses-bin ncurses-base libpam-modules
  libpam-modules-bin libpam-runtime gzip bsdutils debianutils init-system-helpers libsystemd0
  libudev1 libmount1 libblkid1 libsmartcols1 libcap-ng0 libpam0g libaudit1 libaudit-common
  libgcrypt20 libgpg-error0 liblz4-1"
# shellcheck disable=SC2016 # "$1" in the hooks is the root directory, expanded by mmdebstrap
BASE_ARGS=(
  --variant=essential --mode=root --format=tar
  "--include=${BASE_INCLUDE}"
  '--aptopt=Acquire::Languages "none"'
  '--dpkgopt=path-exclude=/usr/share/man/*'
  '--dpkgopt=path-exclude=/usr/share/doc/*'
  '--dpkgopt=path-include=/usr/share/doc/*/copyright'
  '--dpkgopt=path-exclude=/usr/share/locale/*'
  '--dpkgopt=path-exclude=/usr/share/info/*'
  '--dpkgopt=path-exclude=/usr/share/lintian/*'
  "--customize-hook=chroot \"\$1\" dpkg --purge --force-remove-essential --force-depends ${BASE_PURGE//$'\n'/ } >/dev/null 2>&1"
  '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf "$1"/var/log/* "$1"/etc/apt/apt.conf.d/99mmdebstrap'
)
BASE_CHANGES=(
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  'CMD ["python3.11"]'
)

say() { echo ">> $*"; }
die() { echo "!! $*" >&2; exit 1; }

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO=sudo

ensure_packages() {
  local missing=() entry
  for entry in "${PACKAGES[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  say "installing Debian's ${missing[*]} (apt-get)"
  ${SUDO} apt-get update -qq
  ${SUDO} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null 2>&1 || die "apt-get install ${missing[*]} failed"
  for entry in "${PACKAGES[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 \
      || die "${entry%%:*} (Debian's ${entry#*:}) is still missing after apt-get install"
  done
}

# ----------------------------------------------------------------------------- configuration

write_config() {
  local driver=overlay nofile nproc
  mkdir -p "${CONF_DIR}" "${CACHE}/storage" "${CACHE}/run/tmp" "${CACHE}/networks" "${LOG_DIR}"
  # overlay cannot sit on overlayfs (a container's own filesystem): vfs copies instead.
  [[ "$(stat -f -c %T "${CACHE}/storage")" == overlayfs ]] && driver=vfs
  driver="${LMA_STORAGE_DRIVER:-${driver}}"
  nofile="$(ulimit -Hn)"
  [[ "${nofile}" == unlimited || "${nofile}" -gt 1048576 ]] && nofile=1048576
  nproc="$(ulimit -Hu)"
  [[ "${nproc}" == unlimited || "${nproc}" -gt 32768 ]] && nproc=32768
  write_if_changed "${CONF_DIR}/storage.conf" <<EOF
# Written by hack/build-image.sh: the project's own container storage.
[storage]
driver = "${driver}"
graphroot = "${CACHE}/storage"
runroot = "${CACHE}/run/storage"
EOF
  write_if_changed "${CONF_DIR}/containers.conf" <<EOF
# Written by hack/build-image.sh: podman and buildah settings that work on this machine.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${CACHE}/run/events.log"
runtime = "runc"
static_dir = "${CACHE}/storage/libpod"
tmp_dir = "${CACHE}/run/tmp"
volume_path = "${CACHE}/storage/volumes"

[network]
network_config_dir = "${CACHE}/networks"
EOF
  export CONTAINERS_CONF="${CONF_DIR}/containers.conf"
  export CONTAINERS_STORAGE_CONF="${CONF_DIR}/storage.conf"
}

write_if_changed() {
  local target="$1" tmp
  tmp="$(mktemp "${target}.XXXXXX")"
  cat > "${tmp}"
  if cmp -s "${tmp}" "${target}" 2>/dev/null; then rm -f "${tmp}"; else mv -f "${tmp}" "${target}"; fi
}

project_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' "${ROOT}/pyproject.toml" | head -1
}

# ----------------------------------------------------------------------------- progress

# run_step LABEL LOG PATTERN CMD...: CMD's output goes to LOG; lines matching PATTERN are shown,
# and a line every 20 s while it runs. On failure: the log's tail, then exit.
run_step() {
  local label="$1" log="$2" pattern="$3" began=${SECONDS} ticker rc=0
  shift 3
  say "${label}"
  : > "${log}"
  # sleep must not hold the output open once the ticker is killed (callers read until EOF).
  ( while sleep 20 >/dev/null 2>&1; do echo "   ... ${label}: $((SECONDS - began))s"; done ) &
  ticker=$!
  "$@" > >(tee -a "${log}" | grep --line-buffered -E "${pattern}" | sed -u 's/^/   /') 2>&1 || rc=$?
  kill "${ticker}" 2>/dev/null || true
  wait "${ticker}" 2>/dev/null || true
  if [[ ${rc} -ne 0 ]]; then
    sleep 0.2
    echo "!! ${label} failed (exit ${rc}); last lines of ${log}:" >&2
    tail -n 40 "${log}" >&2
    exit "${rc}"
  fi
  echo "   done in $((SECONDS - began))s"
}

# ----------------------------------------------------------------------------- 1. wheels

pip_python() {
  if [[ -n "${PIP_PYTHON:-}" ]]; then echo "${PIP_PYTHON}"
  elif [[ -x "${ROOT}/.venv/bin/python" ]]; then echo "${ROOT}/.venv/bin/python"
  else echo python3
  fi
}

build_wheels() {
  local py arch stamp tmp project platforms glibc legacy
  py="$(pip_python)"
  "${py}" -m pip --version >/dev/null 2>&1 || die "${py} has no pip: run make setup, or set PIP_PYTHON"
  arch="$(uname -m)"
  tmp="$(mktemp -d)"
  # A fixed timestamp makes the wheel byte-identical while the sources are: the build's cached
  # layers then stay valid.
  run_step "building the project's wheel" "${LOG_DIR}/wheel.log" '^(Successfully|ERROR)' \
    env SOURCE_DATE_EPOCH=315532800 "${py}" -m pip wheel --no-deps --wheel-dir "${tmp}" "${ROOT}"
  project="$(echo "${tmp}"/llm_metrics_adapter-*.whl)"
  [[ -f "${project}" ]] || die "pip wheel made no llm_metrics_adapter wheel"
  # pip takes the platforms literally: every glibc version bookworm's 2.36 satisfies, and the
  # legacy aliases.
  platforms=()
  for glibc in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${glibc}_${arch}"); done
  for legacy in manylinux2014 manylinux2010 manylinux1; do platforms+=(--platform "${legacy}_${arch}"); done
  stamp="$(sha256sum "${ROOT}/pyproject.toml" | cut -c1-16) cp311 manylinux_2_36_${arch}"
  if [[ "$(cat "${WHEELS}/.stamp" 2>/dev/null)" != "${stamp}" ]]; then
    rm -f "${WHEELS}"/*.whl "${WHEELS}/.stamp"
    run_step "downloading the runtime dependencies' wheels (cp311, manylinux_2_36_${arch})" \
      "${LOG_DIR}/download.log" '^(Saved|Successfully|ERROR)' \
      "${py}" -m pip download --quiet --progress-bar off --only-binary=:all: \
      "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 \
      --dest "${WHEELS}" "${project}" pip
    echo "${stamp}" > "${WHEELS}/.stamp"
  else
    say "runtime dependencies' wheels are current (pyproject.toml unchanged)"
  fi
  # Only for this build (see build_image): a later plain `docker build` of changed sources must
  # not install a stale project wheel. Its bytes are the same while the sources are, so removing
  # and copying it again keeps the cached layers valid.
  rm -f "${WHEELS}"/llm_metrics_adapter-*.whl
  cp "${project}" "${WHEELS}/"
  rm -rf "${tmp}"
  echo "   $(find "${WHEELS}" -name '*.whl' | wc -l) wheels, $(du -sh "${WHEELS}" | cut -f1) in hack/image/wheels"
}

# ----------------------------------------------------------------------------- 2. base

recipe_hash() {
  printf '%s\n' "${BASE_SUITE}" "${BASE_ARGS[@]}" "${BASE_CHANGES[@]}" | sha256sum | cut -c1-16
}

local_base() {
  local hash tarball have sources=() f change_args=()
  hash="$(recipe_hash)"
  have="$(podman image inspect --format '{{index .Labels "lma.recipe"}}' "${LOCAL_BASE}" 2>/dev/null || true)"
  if [[ "${have}" == "${hash}" ]]; then
    say "local base ${LOCAL_BASE} is current (recipe ${hash})" >&2
    echo "${LOCAL_BASE}"
    return
  fi
  tarball="${CACHE}/base-${BASE_SUITE}-${hash}.tar"
  if [[ ! -s "${tarball}" ]]; then
    # The host's apt sources (deb822 or one-line) are the mirror: no address is written here.
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
      [[ -s "${f}" ]] && sources+=("${f}")
    done
    [[ ${#sources[@]} -gt 0 ]] || die "no apt sources on this machine for mmdebstrap"
    run_step "bootstrapping a ${BASE_SUITE} base with python3.11 (mmdebstrap, about 30 s)" \
      "${LOG_DIR}/mmdebstrap.log" '^I: (downloading|extracting|installing|running --customize|creating|success)' \
      mmdebstrap "${BASE_ARGS[@]}" "${BASE_SUITE}" "${tarball}.part" "${sources[@]}" >&2
    mv -f "${tarball}.part" "${tarball}"
    rm -f "${CACHE}"/base-"${BASE_SUITE}"-*.tar.part
    find "${CACHE}" -maxdepth 1 -name "base-${BASE_SUITE}-*.tar" ! -name "$(basename "${tarball}")" -delete
  fi
  for change in "${BASE_CHANGES[@]}" "LABEL lma.recipe=${hash}"; do
    change_args+=(--change "${change}")
  done
  run_step "importing the base as ${LOCAL_BASE}" "${LOG_DIR}/import.log" '^Error' \
    podman import --quiet "${change_args[@]}" "${tarball}" "${LOCAL_BASE}" >&2
  echo "${LOCAL_BASE}"
}

choose_base() {
  case "${LMA_IMAGE_BASE:-auto}" in
    local) local_base ;;
    auto)
      # A failed pull is remembered for a day: no registry is asked on every build.
      if podman image exists "${DEFAULT_BASE}"; then
        say "base: ${DEFAULT_BASE} (in local storage)" >&2
        echo "${DEFAULT_BASE}"
      elif [[ -z "$(find "${CACHE}/pull-failed" -mmin -1440 2>/dev/null)" ]] \
        && timeout 300 buildah pull --quiet "${DEFAULT_BASE}" >"${LOG_DIR}/pull.log" 2>&1; then
        rm -f "${CACHE}/pull-failed"
        say "base: ${DEFAULT_BASE} (pulled)" >&2
        echo "${DEFAULT_BASE}"
      else
        [[ -e "${CACHE}/pull-failed" ]] || touch "${CACHE}/pull-failed"
        say "base: ${DEFAULT_BASE} could not be pulled ($(tail -n 1 "${LOG_DIR}/pull.log" | cut -c1-90)); using a local ${BASE_SUITE} base" >&2
        local_base
      fi
      ;;
    *) echo "${LMA_IMAGE_BASE}" ;;
  esac
}

# ----------------------------------------------------------------------------- 3. image

build_image() {
  local began=${SECONDS} base image size
  ensure_packages
  write_config
  image="${IMAGE_REPO}:$(project_version)"
  trap 'rm -f "${WHEELS}"/llm_metrics_adapter-*.whl' EXIT
  build_wheels
  base="$(choose_base)"
  run_step "building ${image} from the Dockerfile (buildah, base ${base})" "${LOG_DIR}/build.log" \
    '(STEP [0-9]|^COMMIT|^Successfully tagged|^Error)' \
    buildah build --layers --pull=false --network none \
    --build-arg "PYTHON_IMAGE=${base}" --label "org.opencontainers.image.version=$(project_version)" \
    -f "${ROOT}/Dockerfile" -t "${image}" "${ROOT}"
  # Images the builds of the last days superseded; younger ones may still be cached layers.
  podman image prune --force --filter until=72h >/dev/null 2>&1 || true
  size="$(podman image inspect --format '{{.Size}}' "${image}")"
  say "built ${image}: $((size / 1000000)) MB, in $((SECONDS - began))s"
  echo "${image}"
}

case "${1:-build}" in
  build) build_image ;;
  env)
    write_config
    echo "CONTAINERS_CONF=${CONTAINERS_CONF}"
    echo "CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF}"
    echo "LMA_IMAGE=${IMAGE_REPO}:$(project_version)"
    ;;
  packages) ensure_packages ;;
  *) die "unknown command: $1 (known: build, env, packages)" ;;
esac
