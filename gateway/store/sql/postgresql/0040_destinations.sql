-- Destination controls and health (PostgreSQL mirror of sqlite/0040_destinations.sql).

CREATE TABLE destinations (
    name             TEXT PRIMARY KEY,
    paused           BIGINT NOT NULL DEFAULT 0,
    paused_at        DOUBLE PRECISION,
    paused_by        TEXT,
    pause_reason     TEXT,
    concurrency      BIGINT,
    rate             DOUBLE PRECISION,
    settings_by      TEXT,
    settings_at      DOUBLE PRECISION,
    circuit          TEXT NOT NULL DEFAULT 'closed',
    circuit_since    DOUBLE PRECISION,
    circuit_failures BIGINT NOT NULL DEFAULT 0,
    next_probe_at    DOUBLE PRECISION,
    last_success_at  DOUBLE PRECISION,
    last_error       TEXT,
    last_error_at    DOUBLE PRECISION,
    updated_at       DOUBLE PRECISION
);

CREATE TABLE destination_minutes (
    destination TEXT NOT NULL,
    minute      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    failures    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (destination, minute)
);

CREATE INDEX ix_outbox_waiting ON outbox(destination, id) WHERE state IN ('pending', 'inflight');
