-- /metrics reads the backlog of each destination and its oldest waiting delivery on every
-- (cached) scrape: this index answers both without reading the delivered rows, whatever
-- their number (gateway.store.observability).
CREATE INDEX ix_outbox_waiting ON outbox(destination, id) WHERE state IN ('pending', 'inflight');
