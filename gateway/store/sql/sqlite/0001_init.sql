-- Core tables of the gateway store (SQLite).
-- A "receipt" is the unique (system, kind, record_key, version) row in records:
-- the business-key idempotency of the design.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE records (
    id            INTEGER PRIMARY KEY,
    system        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    record_key    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    case_no       TEXT NOT NULL,
    business_time TEXT,
    receipt_time  TEXT NOT NULL,
    payload_hash  TEXT NOT NULL,
    receipt_id    TEXT NOT NULL,
    status        TEXT NOT NULL,          -- current | superseded | stale
    ref           TEXT NOT NULL,
    body          TEXT NOT NULL           -- the common record, JSON
);
CREATE UNIQUE INDEX ux_records_receipt ON records(system, kind, record_key, version);
CREATE INDEX ix_records_case ON records(case_no);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    record_id       INTEGER NOT NULL REFERENCES records(id),
    destination     TEXT NOT NULL,
    case_no         TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    state           TEXT NOT NULL,        -- pending | inflight | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease_until     REAL,
    last_error      TEXT,
    settled_at      REAL,
    remote_id       TEXT
);
-- Claiming: due pending rows per destination.
CREATE INDEX ix_outbox_due ON outbox(destination, next_attempt_at, id) WHERE state = 'pending';
-- Per-case order: is there an earlier open row of the same case for this destination?
CREATE INDEX ix_outbox_case_open ON outbox(destination, case_no, id) WHERE state IN ('pending', 'inflight', 'dead');
CREATE INDEX ix_outbox_inflight ON outbox(lease_until) WHERE state = 'inflight';

CREATE TABLE quarantine (
    id           INTEGER PRIMARY KEY,
    system       TEXT NOT NULL,
    ref          TEXT NOT NULL,
    kind         TEXT,
    errors       TEXT NOT NULL,           -- JSON list of {field, rule, value, message}
    payload      TEXT,
    raw          BLOB,
    receipt_time TEXT NOT NULL
);

CREATE TABLE cursors (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

-- The audit hash chain; body is the canonical entry (gateway.audit.chain), hash links it.
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY,
    case_no TEXT,
    action  TEXT NOT NULL,
    hash    TEXT NOT NULL,
    body    BLOB NOT NULL
);
CREATE INDEX ix_audit_case ON audit(case_no) WHERE case_no IS NOT NULL;
