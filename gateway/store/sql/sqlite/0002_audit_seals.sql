-- Audit seals, seal keys and retention archives (gateway.audit).
-- A seal signs a statement over audit entries from_seq..to_seq: the chain head at
-- to_seq, an RFC 6962 Merkle root over the entry hashes, and the previous seal's hash.

CREATE TABLE audit_seals (
    seal                INTEGER PRIMARY KEY,  -- 1, 2, 3 … continuing across archives
    from_seq            INTEGER NOT NULL,
    to_seq              INTEGER NOT NULL,
    statement           BLOB NOT NULL,        -- canonical JSON, the exact signed bytes
    statement_hash      TEXT NOT NULL,        -- H(statement); the next seal names it
    state               TEXT NOT NULL,        -- pending | signed
    signature           BLOB,
    key_id              TEXT,                 -- SHA-256 fingerprint of the signing certificate
    signature_algorithm TEXT,
    created_at          TEXT NOT NULL,
    signed_at           TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT
);
CREATE UNIQUE INDEX ux_audit_seals_to ON audit_seals(to_seq);
CREATE INDEX ix_audit_seals_pending ON audit_seals(seal) WHERE state = 'pending';

-- Certificates that signed seals or archives, so exports can include them.
-- A verifier trusts certificates it got elsewhere; these are a convenience copy.
CREATE TABLE audit_keys (
    key_id      TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    certificate TEXT NOT NULL,                -- PEM
    added_at    TEXT NOT NULL
) WITHOUT ROWID;

-- One row per archive file written; its entries and seals were then deleted here.
CREATE TABLE audit_archives (
    archive        INTEGER PRIMARY KEY,
    file           TEXT NOT NULL,
    manifest_hash  TEXT NOT NULL,
    from_seq       INTEGER NOT NULL,
    to_seq         INTEGER NOT NULL,
    prev_hash      TEXT NOT NULL,
    last_hash      TEXT NOT NULL,
    first_seal     INTEGER NOT NULL,
    last_seal      INTEGER NOT NULL,
    last_seal_hash TEXT NOT NULL,
    entries        INTEGER NOT NULL,
    created_at     TEXT NOT NULL
);
