# syntax=docker/dockerfile:1
#
# llm-metrics-adapter image: `serve` on port 443 as the fixed non-root user 65532 (the UID the
# manifests in deploy/ run as).
#
#   docker build -t llm-metrics-adapter:0.1.0 .
#
# The base is pinned by tag. Pin it by digest too when you build for production
# (python:3.11-slim-bookworm@sha256:...): the digest could not be looked up where this file was
# written, and a wrong digest would break every build.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel needs: a change in tests or docs does not rebuild the layer.
COPY pyproject.toml README.md ./
COPY adapter ./adapter

# Build the wheel, then install it and its dependencies into a self-contained venv that the final
# stage copies as is. pip, setuptools and wheel leave the venv afterwards: nothing in the final
# image installs or builds anything.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install /wheels/llm_metrics_adapter-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

# ---------------------------------------------------------------- final
FROM ${PYTHON_IMAGE}

# No package manager front-ends for Python in the runtime image either.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 65532 adapter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin adapter

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
