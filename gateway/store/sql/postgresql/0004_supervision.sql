-- Electronic-supervision state per case (PostgreSQL mirror of sqlite/0004_supervision.sql).
CREATE TABLE case_state (
    case_key   TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    next_check DOUBLE PRECISION,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_case_state_next_check ON case_state(next_check) WHERE next_check IS NOT NULL;
