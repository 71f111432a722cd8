-- API tokens for scripts: gwt_<token_id>_<secret>. Only the SHA-256 of the secret is kept;
-- the token is shown once, when it is created.

CREATE TABLE api_tokens (
    token_id        TEXT PRIMARY KEY,
    secret_hash     TEXT NOT NULL,
    user_name       TEXT NOT NULL REFERENCES users(name),
    label           TEXT NOT NULL,
    created_at      REAL NOT NULL,
    created_by      TEXT NOT NULL,
    expires_at      REAL NOT NULL,
    revoked_at      REAL,
    revoked_by      TEXT,
    last_used_at    REAL,
    last_used_from  TEXT
);
CREATE INDEX ix_api_tokens_user ON api_tokens(user_name);
