# syntax=docker/dockerfile:1
#
# llm-metrics-adapter image: `serve` on port 443 as the fixed non-root user 65532 (the UID the
# manifests in deploy/ run as).
#
#   make image                                   # wheels built on the host, no network in the build
#   docker build -t llm-metrics-adapter:0.1.0 .  # also works: builds the wheels inside (needs PyPI)
#
# `make image` (hack/build-image.sh) puts the project's wheel and every runtime dependency's
# binary wheel in hack/image/wheels/ first; the builder then installs from there only
# (--no-index). Without the project's wheel there (a plain `docker build`: make image removes it
# after its build), the builder makes the wheels itself with the base's pip.
#
# PYTHON_IMAGE is any Debian bookworm image with python3.11 and /bin/sh: the default, or the
# local base hack/build-image.sh bootstraps with mmdebstrap when the default cannot be pulled.
# Both stages use it, so the venv's interpreter symlink resolves in the final image.
# Pin it by digest for production (python:3.11-slim-bookworm@sha256:...): the digest could not be
# looked up where this file was written, and a wrong digest would break every build.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY hack/image/wheels/ /wheels/
# Only what a wheel needs: a change in tests or docs does not rebuild the layer.
COPY pyproject.toml README.md ./
COPY adapter ./adapter

# A venv without pip: pip runs from its wheel (a wheel is importable), installs into the venv and
# leaves nothing of itself there. kubernetes/aio, the client's asyncio twin (a third of the
# venv), is never imported: the adapter uses the synchronous client in worker threads.
# Bytecode is compiled once, as unchecked-hash .pyc files: the root filesystem is read-only at run
# time, and copied files' timestamps must not matter.
RUN set -eu; \
    set -- /wheels/llm_metrics_adapter-*.whl; \
    if [ ! -f "$1" ]; then \
      python3.11 -m pip wheel --wheel-dir /wheels . pip; \
      set -- /wheels/llm_metrics_adapter-*.whl; \
    fi; \
    project="$1"; \
    set -- /wheels/pip-*.whl; \
    python3.11 -m venv --without-pip /opt/venv; \
    /opt/venv/bin/python "$1/pip" install --no-index --find-links /wheels --no-compile "$project"; \
    rm -rf /opt/venv/lib/python3.11/site-packages/kubernetes/aio; \
    /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# ---------------------------------------------------------------- final
FROM ${PYTHON_IMAGE}

# No package manager front-ends for Python in the runtime image: pip, setuptools and wheel leave
# the base (python:3.11-slim has them; Debian's python3.11 does not), as does ensurepip.
# The user is written into /etc/passwd directly: a minimal base has no useradd.
RUN set -eu; \
    if python3.11 -m pip --version >/dev/null 2>&1; then \
      python3.11 -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel; \
    fi; \
    rm -rf /usr/local/lib/python3.11/ensurepip /usr/lib/python3.11/ensurepip; \
    echo 'adapter:x:65532:' >> /etc/group; \
    echo 'adapter:x:65532:65532:llm-metrics-adapter:/nonexistent:/usr/sbin/nologin' >> /etc/passwd

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LMA_PORT=443

# Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532

# GKE private clusters only let the control plane reach nodes on 443 and 10250. Binding 443 as
# non-root needs net.ipv4.ip_unprivileged_port_start=0, which the Deployment sets (Docker sets it
# by default).
EXPOSE 443

ENTRYPOINT ["llm-metrics-adapter"]
CMD ["serve"]
