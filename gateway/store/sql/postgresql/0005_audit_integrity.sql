-- Audit integrity (format 2), PostgreSQL mirror of sqlite/0005_audit_integrity.sql (the reasons are there).
-- The case index is an expression index on the body, through an immutable function so the
-- index can use it; queries use the same expression (gateway.store.dialect).

DROP INDEX ix_audit_case;
ALTER TABLE audit DROP COLUMN action;
ALTER TABLE audit DROP COLUMN case_no;
CREATE FUNCTION gateway_audit_case(body BYTEA) RETURNS TEXT LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT convert_from(body, 'UTF8')::jsonb ->> 'case' $$;
CREATE INDEX ix_audit_case ON audit(gateway_audit_case(body));
ALTER TABLE audit_keys DROP COLUMN added_at;

CREATE TABLE audit_seal_attempts (
    seal       BIGINT PRIMARY KEY,
    attempts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
INSERT INTO audit_seal_attempts(seal, attempts, last_error, updated_at)
    SELECT seal, attempts, last_error, created_at FROM audit_seals WHERE state <> 'signed';
UPDATE audit_seals SET signature = NULL, key_id = NULL, signature_algorithm = NULL WHERE state <> 'signed';
DROP INDEX ix_audit_seals_pending;
ALTER TABLE audit_seals DROP COLUMN state;
ALTER TABLE audit_seals DROP COLUMN created_at;
ALTER TABLE audit_seals DROP COLUMN signed_at;
ALTER TABLE audit_seals DROP COLUMN attempts;
ALTER TABLE audit_seals DROP COLUMN last_error;
CREATE INDEX ix_audit_seals_unsigned ON audit_seals(seal) WHERE signature IS NULL;
