-- Monthly statistics of the case index (办件统计月表), kept in the same transaction as case_index:
-- each batch subtracts what its cases contributed before and adds what they contribute now, so
-- the hall's report reads a few thousand rows instead of grouping every case.
--
-- A case counts as received (with its overdue and back-filled flags) in the month of its
-- application, and as completed (with on time / timed) in the month of its completion.
-- department and item_code are '' when the case did not say.

CREATE TABLE case_stats_monthly (
    month       TEXT NOT NULL,
    department  TEXT NOT NULL,
    item_code   TEXT NOT NULL,
    item_name   TEXT,
    received    INTEGER NOT NULL DEFAULT 0,
    overdue     INTEGER NOT NULL DEFAULT 0,
    backfilled  INTEGER NOT NULL DEFAULT 0,
    completed   INTEGER NOT NULL DEFAULT 0,
    on_time     INTEGER NOT NULL DEFAULT 0,
    timed       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, department, item_code)
);

-- Cases indexed before this table existed.
INSERT INTO case_stats_monthly(month, department, item_code, item_name, received, overdue, backfilled)
    SELECT received_month, COALESCE(department, ''), COALESCE(item_code, ''), max(item_name), count(*),
           sum(overdue), sum(backfilled)
    FROM case_index WHERE status IS NOT NULL GROUP BY 1, 2, 3;
INSERT INTO case_stats_monthly(month, department, item_code, item_name, completed, on_time, timed)
    SELECT completed_month, COALESCE(department, ''), COALESCE(item_code, ''), max(item_name), count(*),
           sum(CASE WHEN on_time = 1 THEN 1 ELSE 0 END), sum(CASE WHEN on_time IS NULL THEN 0 ELSE 1 END)
    FROM case_index WHERE completed_month IS NOT NULL GROUP BY 1, 2, 3
    ON CONFLICT(month, department, item_code) DO UPDATE SET completed = excluded.completed,
        on_time = excluded.on_time, timed = excluded.timed;
