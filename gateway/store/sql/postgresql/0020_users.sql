-- People who use the gateway (PostgreSQL mirror of sqlite/0020_users.sql).

CREATE TABLE users (
    name              TEXT PRIMARY KEY,
    display_name      TEXT,
    role              TEXT NOT NULL,
    systems           TEXT,
    password_hash     TEXT,
    password_set_at   DOUBLE PRECISION,
    created_at        DOUBLE PRECISION NOT NULL,
    created_by        TEXT NOT NULL,
    updated_at        DOUBLE PRECISION NOT NULL,
    disabled_at       DOUBLE PRECISION,
    last_login_at     DOUBLE PRECISION
);
