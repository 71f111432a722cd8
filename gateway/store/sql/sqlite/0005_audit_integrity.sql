-- Audit integrity (format 2): every stored byte of an entry or a seal that carries meaning is
-- covered by the hash chain or a signature, or checked against one.
--
-- * audit.action and audit.case_no duplicated the body's "action" and "case", and nothing checked
--   them (a changed case_no hid a case's entries from evidence export): gone. The case index is
--   now an index on the body itself, which SQL cannot change without changing the body (and so
--   the hash) and which costs the verifier nothing.
-- * A seal's "state" column decided whether its signature was checked: gone. A seal is signed
--   exactly when it carries a signature, and the verifier checks every signature it finds.
-- * created_at / signed_at / attempts / last_error were unprotected bookkeeping on the seal
--   row. The chain itself now records when a seal was made and when it was signed (entries
--   seal_made and seal_signed); signing attempts live in audit_seal_attempts, which is
--   operational state, not evidence.

DROP INDEX ix_audit_case;
ALTER TABLE audit DROP COLUMN action;
ALTER TABLE audit DROP COLUMN case_no;
CREATE INDEX ix_audit_case ON audit(json_extract(CAST(body AS TEXT), '$.case'));
-- The verifier checks each certificate copy against its key id; when it was added meant nothing.
ALTER TABLE audit_keys DROP COLUMN added_at;

CREATE TABLE audit_seals_v2 (
    seal                INTEGER PRIMARY KEY,  -- 1, 2, 3 … continuing across archives
    from_seq            INTEGER NOT NULL,
    to_seq              INTEGER NOT NULL,
    statement           BLOB NOT NULL,        -- canonical JSON, the exact signed bytes
    statement_hash      TEXT NOT NULL,        -- H(statement); the next seal names it
    signature           BLOB,                 -- NULL while the seal waits for its signature
    key_id              TEXT,                 -- SHA-256 fingerprint of the signing certificate
    signature_algorithm TEXT
);
INSERT INTO audit_seals_v2(seal, from_seq, to_seq, statement, statement_hash, signature, key_id, signature_algorithm)
    SELECT seal, from_seq, to_seq, statement, statement_hash,
           CASE WHEN state = 'signed' THEN signature END,
           CASE WHEN state = 'signed' THEN key_id END,
           CASE WHEN state = 'signed' THEN signature_algorithm END
    FROM audit_seals;

CREATE TABLE audit_seal_attempts (
    seal       INTEGER PRIMARY KEY,           -- a seal waiting for its signature
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
INSERT INTO audit_seal_attempts(seal, attempts, last_error, updated_at)
    SELECT seal, attempts, last_error, created_at FROM audit_seals WHERE state <> 'signed';

DROP TABLE audit_seals;
ALTER TABLE audit_seals_v2 RENAME TO audit_seals;
CREATE UNIQUE INDEX ux_audit_seals_to ON audit_seals(to_seq);
CREATE INDEX ix_audit_seals_unsigned ON audit_seals(seal) WHERE signature IS NULL;
