# The gateway as a container: `docker build -t exchange-gateway .`
# then `docker run -v $PWD/site:/site exchange-gateway run -c /site/gateway.toml`.
FROM python:3.11-slim-bookworm

# JSON log lines on stderr for the container runtime's collector (docs/operations.md)
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GATEWAY_LOG_FORMAT=json
RUN apt-get update \
    && apt-get install -y --no-install-recommends libxmlsec1-openssl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY mappings ./mappings
RUN pip install --no-cache-dir -e . \
    && useradd --system --home /site gateway
USER gateway
WORKDIR /site
EXPOSE 8080
ENTRYPOINT ["gateway"]
CMD ["--help"]
