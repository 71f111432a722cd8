-- Audit seals, seal keys and retention archives (PostgreSQL mirror of sqlite/0002_audit_seals.sql).

CREATE TABLE audit_seals (
    seal                BIGINT PRIMARY KEY,
    from_seq            BIGINT NOT NULL,
    to_seq              BIGINT NOT NULL,
    statement           BYTEA NOT NULL,
    statement_hash      TEXT NOT NULL,
    state               TEXT NOT NULL,
    signature           BYTEA,
    key_id              TEXT,
    signature_algorithm TEXT,
    created_at          TEXT NOT NULL,
    signed_at           TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT
);
CREATE UNIQUE INDEX ux_audit_seals_to ON audit_seals(to_seq);
CREATE INDEX ix_audit_seals_pending ON audit_seals(seal) WHERE state = 'pending';

CREATE TABLE audit_keys (
    key_id      TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    certificate TEXT NOT NULL,
    added_at    TEXT NOT NULL
);

CREATE TABLE audit_archives (
    archive        BIGINT PRIMARY KEY,
    file           TEXT NOT NULL,
    manifest_hash  TEXT NOT NULL,
    from_seq       BIGINT NOT NULL,
    to_seq         BIGINT NOT NULL,
    prev_hash      TEXT NOT NULL,
    last_hash      TEXT NOT NULL,
    first_seal     BIGINT NOT NULL,
    last_seal      BIGINT NOT NULL,
    last_seal_hash TEXT NOT NULL,
    entries        BIGINT NOT NULL,
    created_at     TEXT NOT NULL
);
