-- Destination controls and health (gateway.store.destinations): the store is the truth that every
-- delivering process reads. An operator's pause and runtime settings, the circuit breaker's state as
-- the worker last wrote it, the last success and error; per-minute attempt counts give the error rate.

CREATE TABLE destinations (
    name             TEXT PRIMARY KEY,
    paused           INTEGER NOT NULL DEFAULT 0,
    paused_at        REAL,
    paused_by        TEXT,
    pause_reason     TEXT,
    concurrency      INTEGER,                      -- runtime override; NULL: gateway.toml decides
    rate             REAL,                         -- requests per second; 0: no limit; NULL: gateway.toml
    settings_by      TEXT,
    settings_at      REAL,
    circuit          TEXT NOT NULL DEFAULT 'closed', -- closed | open | half_open
    circuit_since    REAL,
    circuit_failures INTEGER NOT NULL DEFAULT 0,
    next_probe_at    REAL,
    last_success_at  REAL,
    last_error       TEXT,
    last_error_at    REAL,
    updated_at       REAL
);

CREATE TABLE destination_minutes (
    destination TEXT NOT NULL,
    minute      INTEGER NOT NULL,                  -- unix time // 60
    attempts    INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (destination, minute)
);

-- Backlog and oldest waiting delivery per destination without reading every row: ids grow with
-- created_at, so the oldest waiting one is the first in this index.
CREATE INDEX ix_outbox_waiting ON outbox(destination, id) WHERE state IN ('pending', 'inflight');
