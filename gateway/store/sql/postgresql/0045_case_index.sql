-- The console's case index (PostgreSQL mirror of sqlite/0045_case_index.sql; the comments are there).

CREATE TABLE case_index (
    case_no               TEXT PRIMARY KEY,
    item_code             TEXT,
    item_name             TEXT,
    applicant_name        TEXT,
    applicant_type        TEXT,              -- 申请人类型 (1 person, 2 enterprise, 3 other): decides masking
    applicant_id_type     TEXT,
    applicant_credit_code TEXT,              -- only for applicants that are not natural persons
    region_code           TEXT,
    department            TEXT,
    status                TEXT NOT NULL,     -- received | accepted | correction | refused | completed
    clock                 TEXT,              -- the supervision clock when last folded (gateway.supervision.ClockState)
    warning               BIGINT NOT NULL DEFAULT 0,   -- 0 none, 1 yellow, 2 red: the highest alert raised
    overdue               BIGINT NOT NULL DEFAULT 0,
    backfilled            BIGINT NOT NULL DEFAULT 0,
    outside_system        BIGINT NOT NULL DEFAULT 0,
    alerts                BIGINT NOT NULL DEFAULT 0,   -- alert records seen for the case
    submitted_at          TEXT,
    accepted_at           TEXT,
    due_at                TEXT,
    completed_at          TEXT,
    on_time               BIGINT,           -- completed: 1 on time, 0 late; NULL while open or without a limit
    license_no            TEXT,
    received_month        TEXT NOT NULL,     -- YYYY-MM, China time, of the application (or first receipt)
    completed_month       TEXT,
    first_received_at     TEXT NOT NULL,
    last_received_at      TEXT NOT NULL,
    records               BIGINT NOT NULL DEFAULT 0
);
-- One index per search, each ending in the page order (newest activity first).
CREATE INDEX ix_case_index_recent ON case_index(last_received_at, case_no);
CREATE INDEX ix_case_index_applicant ON case_index(applicant_name, last_received_at);
CREATE INDEX ix_case_index_credit ON case_index(applicant_credit_code, last_received_at);
CREATE INDEX ix_case_index_item ON case_index(item_code, last_received_at);
CREATE INDEX ix_case_index_region ON case_index(region_code, last_received_at);
CREATE INDEX ix_case_index_status ON case_index(status, last_received_at);
CREATE INDEX ix_case_index_warning ON case_index(warning, last_received_at);
-- Statistics: by month, then department and item, covering what the report counts.
CREATE INDEX ix_case_index_stats_received ON case_index(received_month, department, item_code, overdue, backfilled);
CREATE INDEX ix_case_index_stats_completed ON case_index(completed_month, department, item_code, on_time);

-- Supervision alerts (any source: the rules, the sealer, later ones) by type, colour and case.
CREATE TABLE alert_index (
    alert_id    TEXT PRIMARY KEY,
    record_id   BIGINT NOT NULL,
    case_no     TEXT NOT NULL,
    alert_type  TEXT NOT NULL,
    severity    TEXT NOT NULL,            -- red | yellow | info
    raised_at   TEXT NOT NULL,
    department  TEXT,
    description TEXT
);
CREATE INDEX ix_alert_index_page ON alert_index(record_id);
CREATE INDEX ix_alert_index_type ON alert_index(alert_type, record_id);
CREATE INDEX ix_alert_index_severity ON alert_index(severity, record_id);
CREATE INDEX ix_alert_index_case ON alert_index(case_no, record_id);

-- Acknowledgements (确认) of alerts by people: who, when, and their note. Each is also an audit entry.
CREATE TABLE alert_acks (
    alert_id  TEXT PRIMARY KEY,
    case_no   TEXT NOT NULL,
    acked_by  TEXT NOT NULL,
    role      TEXT NOT NULL,
    acked_at  TEXT NOT NULL,
    note      TEXT NOT NULL
);

-- Last contact per counterpart system (the newest record received from it), kept by the same follower.
CREATE TABLE counterpart_contact (
    system           TEXT PRIMARY KEY,
    last_received_at TEXT NOT NULL,
    last_record_id   BIGINT NOT NULL,
    records          BIGINT NOT NULL DEFAULT 0
);

-- A case timeline lists every delivery of the case, settled ones included.
CREATE INDEX ix_outbox_case ON outbox(case_no, id);
