"""Operations visibility: JSON logs with correlation ids, Prometheus metrics, liveness and readiness.

- ``correlation``: one id per request, file or pull, stored with its records and audit entries,
  sent on with their deliveries and bound to every log line written while handling them;
- ``logs``: every logger rendered by structlog as JSON lines (or readable on a terminal), masked;
- ``metrics``: what ``/metrics`` shows, cheap with a million records;
- ``health``: ``/healthz`` (alive) and ``/readyz`` (the store takes writes, every part started);
- ``events``: the pipeline's log lines and metric updates.

See docs/operations.md.
"""
