-- Quarantine as a workbench (PostgreSQL mirror of sqlite/0010_quarantine_workbench.sql).

ALTER TABLE quarantine ADD COLUMN item_hash TEXT;
ALTER TABLE quarantine ADD COLUMN reason_hash TEXT;
ALTER TABLE quarantine ADD COLUMN seen_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE quarantine ADD COLUMN last_seen TEXT;
ALTER TABLE quarantine ADD COLUMN last_ref TEXT;
ALTER TABLE quarantine ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
ALTER TABLE quarantine ADD COLUMN mapping TEXT;
ALTER TABLE quarantine ADD COLUMN settled_at TEXT;
ALTER TABLE quarantine ADD COLUMN resolution TEXT;

UPDATE quarantine SET item_hash = 'legacy:' || CAST(id AS TEXT), reason_hash = 'legacy', last_seen = receipt_time,
                      last_ref = ref;

CREATE UNIQUE INDEX ux_quarantine_open_item ON quarantine(system, item_hash, reason_hash) WHERE state = 'open';
CREATE INDEX ix_quarantine_state ON quarantine(state, system, id);
