-- API tokens for scripts (PostgreSQL mirror of sqlite/0022_api_tokens.sql).

CREATE TABLE api_tokens (
    token_id        TEXT PRIMARY KEY,
    secret_hash     TEXT NOT NULL,
    user_name       TEXT NOT NULL REFERENCES users(name),
    label           TEXT NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    created_by      TEXT NOT NULL,
    expires_at      DOUBLE PRECISION NOT NULL,
    revoked_at      DOUBLE PRECISION,
    revoked_by      TEXT,
    last_used_at    DOUBLE PRECISION,
    last_used_from  TEXT
);
CREATE INDEX ix_api_tokens_user ON api_tokens(user_name);
