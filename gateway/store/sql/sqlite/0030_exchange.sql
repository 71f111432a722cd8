-- Two-way exchange (gateway.exchange): correlation links, licence effects, 并联审批,
-- reconciliation results, last contact and watchdog state. Kept by the exchange follower
-- and the reconciler through gateway/store/exchange.py (portable SQL).

-- Every stored record's place in the chain: its case (办件编号), licence (许可编号) and the
-- subject's credit code. case_no stays NULL while a supervision result cannot be tied to a case
-- yet; ``facts`` holds what the record asks of its licence (effect, decision date, authority).
CREATE TABLE exchange_links (
    record_id   INTEGER PRIMARY KEY,
    system      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    record_key  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    case_no     TEXT,
    licence_no  TEXT,
    credit_code TEXT,
    decision_no TEXT,
    resolved_by TEXT,            -- record | licence | credit_code | NULL (not resolved)
    facts       TEXT,            -- JSON
    note        TEXT,
    linked_at   TEXT NOT NULL
);
CREATE INDEX ix_exchange_links_case ON exchange_links(case_no) WHERE case_no IS NOT NULL;
CREATE INDEX ix_exchange_links_licence ON exchange_links(licence_no) WHERE licence_no IS NOT NULL;
CREATE INDEX ix_exchange_links_credit ON exchange_links(credit_code) WHERE credit_code IS NOT NULL;
CREATE INDEX ix_exchange_links_unresolved ON exchange_links(record_id) WHERE case_no IS NULL;

-- Licences the gateway has seen approved, and what supervision did to them.
CREATE TABLE exchange_licences (
    licence_no   TEXT PRIMARY KEY,
    case_no      TEXT,
    credit_code  TEXT,
    licence_name TEXT,
    decision_no  TEXT,           -- the approval decision (行政许可决定文书号)
    approved_by  TEXT,           -- the system the approval result came from
    record_id    INTEGER,
    valid_until  TEXT,
    state        TEXT NOT NULL,  -- valid | suspended | revoked
    state_since  TEXT,
    state_by     TEXT,           -- decision number of the supervision result that set the state
    updated_at   TEXT NOT NULL
);
CREATE INDEX ix_exchange_licences_case ON exchange_licences(case_no);
CREATE INDEX ix_exchange_licences_credit ON exchange_licences(credit_code);

-- One row per supervision decision that suspends or revokes a licence (a newer version replaces it).
CREATE TABLE exchange_effects (
    decision_no TEXT PRIMARY KEY,
    licence_no  TEXT NOT NULL,
    case_no     TEXT,
    effect      TEXT NOT NULL,   -- suspend | revoke | none (lifted by a newer version)
    record_id   INTEGER NOT NULL,
    system      TEXT NOT NULL,
    decided_on  TEXT,
    authority   TEXT,
    applied_at  TEXT NOT NULL,
    notice      TEXT             -- alert id of the notice that told the hall
);
CREATE INDEX ix_exchange_effects_licence ON exchange_effects(licence_no);
CREATE INDEX ix_exchange_effects_case ON exchange_effects(case_no);

-- 并联审批: one row per case dispatched to several departments, one per department.
CREATE TABLE exchange_parallel (
    case_no       TEXT PRIMARY KEY,
    scheme        TEXT NOT NULL,
    lead          TEXT,
    accepted_at   TEXT NOT NULL,
    dispatched_at TEXT NOT NULL,
    state         TEXT NOT NULL, -- open | completed
    completed_at  TEXT,
    result        TEXT,          -- pass | return
    result_key    TEXT,          -- record key of the combined result the gateway sent
    next_check    REAL
);
CREATE INDEX ix_exchange_parallel_due ON exchange_parallel(next_check) WHERE next_check IS NOT NULL;
CREATE INDEX ix_exchange_parallel_state ON exchange_parallel(state, case_no);

CREATE TABLE exchange_parallel_departments (
    case_no     TEXT NOT NULL,
    department  TEXT NOT NULL,
    system      TEXT NOT NULL,
    sink        TEXT NOT NULL,
    due_at      TEXT NOT NULL,
    answered_at TEXT,
    action      TEXT,            -- pass | return
    opinion     TEXT,
    record_id   INTEGER,
    late_alert  TEXT,
    PRIMARY KEY (case_no, department)
);

-- Reconciliation (对账) runs and their outcome.
CREATE TABLE exchange_reconciliations (
    id           INTEGER PRIMARY KEY,
    counterpart  TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    triggered_by TEXT NOT NULL,  -- schedule | cli | api
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    outcome      TEXT NOT NULL,  -- clean | repaired | gaps | unavailable | failed
    summary      TEXT NOT NULL,  -- JSON
    gaps         TEXT NOT NULL,  -- JSON
    audit_seq    INTEGER
);
CREATE INDEX ix_exchange_reconciliations_cp ON exchange_reconciliations(counterpart, id);

-- Last contact per system (a received item, a successful delivery) and watchdog state.
CREATE TABLE exchange_contacts (
    system    TEXT NOT NULL,
    direction TEXT NOT NULL,     -- received | delivered
    last_at   REAL NOT NULL,
    PRIMARY KEY (system, direction)
);

CREATE TABLE exchange_watchdogs (
    counterpart TEXT NOT NULL,
    watch       TEXT NOT NULL,   -- expected_by | silence
    state       TEXT NOT NULL,   -- ok | firing
    since       TEXT NOT NULL,
    detail      TEXT,
    alert_id    TEXT,
    PRIMARY KEY (counterpart, watch)
);

-- Reconciliation reads a period of one system's records and one destination's deliveries.
CREATE INDEX ix_records_system_receipt ON records(system, receipt_time);
CREATE INDEX ix_outbox_delivered ON outbox(destination, settled_at) WHERE state = 'delivered';

-- Records stored before the exchange existed are linked when it first runs, but nobody is told
-- again of what happened to them and nothing is dispatched again (gateway.exchange.follower).
INSERT INTO cursors(name, value, updated_at)
SELECT 'exchange:history', CAST(coalesce(max(id), 0) AS TEXT), strftime('%Y-%m-%dT%H:%M:%S', 'now') FROM records;
