-- Electronic-supervision state per case, kept by the supervision follower.
CREATE TABLE case_state (
    case_key   TEXT PRIMARY KEY,
    state      TEXT NOT NULL,      -- gateway.supervision.CaseState as JSON
    next_check REAL,               -- unix time when a clock tick could raise an alert; NULL: only a record can
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX ix_case_state_next_check ON case_state(next_check) WHERE next_check IS NOT NULL;
