-- Quarantine as a workbench (gateway.store.quarantine): one open entry per source item and
-- reason, however often the item is read again; entries are reprocessed or discarded.
-- item_hash: SHA-256 of the item's own bytes (or of its parsed payload); reason_hash: of the
-- (kind, field, rule) it broke. Entries from before this migration keep their own identity.

ALTER TABLE quarantine ADD COLUMN item_hash TEXT;
ALTER TABLE quarantine ADD COLUMN reason_hash TEXT;
ALTER TABLE quarantine ADD COLUMN seen_count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE quarantine ADD COLUMN last_seen TEXT;
ALTER TABLE quarantine ADD COLUMN last_ref TEXT;
ALTER TABLE quarantine ADD COLUMN state TEXT NOT NULL DEFAULT 'open';  -- open | resolved | discarded
ALTER TABLE quarantine ADD COLUMN mapping TEXT;                        -- name@version that judged it last
ALTER TABLE quarantine ADD COLUMN settled_at TEXT;
ALTER TABLE quarantine ADD COLUMN resolution TEXT;                     -- JSON: outcome, by whom, receipts / reason

UPDATE quarantine SET item_hash = 'legacy:' || CAST(id AS TEXT), reason_hash = 'legacy', last_seen = receipt_time,
                      last_ref = ref;

CREATE UNIQUE INDEX ux_quarantine_open_item ON quarantine(system, item_hash, reason_hash) WHERE state = 'open';
CREATE INDEX ix_quarantine_state ON quarantine(state, system, id);
