-- Monthly statistics of the case index (PostgreSQL mirror of sqlite/0046_case_stats_monthly.sql).

CREATE TABLE case_stats_monthly (
    month       TEXT NOT NULL,
    department  TEXT NOT NULL,
    item_code   TEXT NOT NULL,
    item_name   TEXT,
    received    BIGINT NOT NULL DEFAULT 0,
    overdue     BIGINT NOT NULL DEFAULT 0,
    backfilled  BIGINT NOT NULL DEFAULT 0,
    completed   BIGINT NOT NULL DEFAULT 0,
    on_time     BIGINT NOT NULL DEFAULT 0,
    timed       BIGINT NOT NULL DEFAULT 0,
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
