# syntax=docker/dockerfile:1
# The gateway as a container image (docs/container.md):
#   docker build -t exchange-gateway .
#   docker run -d -p 8080:8080 -v "$PWD/site:/etc/gateway:ro" -v gateway-data:/var/lib/gateway exchange-gateway
# Three gateway processes on PostgreSQL: deploy/compose.yaml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- builder
# Builds the gateway's wheel and collects every dependency's wheel at the versions constraints.txt
# pins, so the final stage installs offline and holds no source tree, compiler or pip cache.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY mappings ./mappings
# PIP_CONSTRAINT also pins the build back-end in pip's isolated build environment.
RUN PIP_CONSTRAINT=/src/constraints.txt pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip wheel --no-cache-dir --constraint constraints.txt --wheel-dir /wheels /wheels/exchange_gateway-*.whl \
    && cp constraints.txt /wheels/

# ---------------------------------------------------------------------------- the image
FROM ${PYTHON_IMAGE}

# GATEWAY_API_HOST: the API listens on every interface inside the container (outside it the
# default stays 127.0.0.1); a host written in gateway.toml still wins. JSON log lines on stderr
# for the runtime's collector (docs/operations.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_API_HOST=0.0.0.0 \
    GATEWAY_LOG_FORMAT=json \
    GATEWAY_CONFIG=/etc/gateway/gateway.toml \
    GATEWAY_DATA=/var/lib/gateway

# tini is PID 1: it forwards SIGTERM (the gateway drains) and reaps the file-reading helper
# processes. No libxmlsec1: the xmlsec wheel links its own (see adapters/soap/README.md).
# Unpinned on purpose: the base image's Debian release fixes tini's version, and a pinned Debian
# revision would break the build at that release's next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so a host folder can be chowned for it: chown -R 10001:10001 ./data
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway --no-create-home \
       --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0750 /var/lib/gateway /var/lib/gateway-witness \
    && install -d -o root -g gateway -m 0750 /etc/gateway

RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels --constraint /wheels/constraints.txt \
        exchange-gateway \
    && gateway --version

COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint

USER 10001:10001
WORKDIR /var/lib/gateway
# The store, drop folders, archives (state); the seal witness belongs on another disk: its own volume.
VOLUME ["/var/lib/gateway", "/var/lib/gateway-witness"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["gateway", "probe", "--quiet", "--timeout", "4s"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "docker-entrypoint"]
CMD ["run"]
