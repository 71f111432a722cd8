-- Console sessions, server-side (PostgreSQL mirror of sqlite/0021_user_sessions.sql).

CREATE TABLE user_sessions (
    id_hash       TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users(name),
    created_at    DOUBLE PRECISION NOT NULL,
    last_seen_at  DOUBLE PRECISION NOT NULL,
    expires_at    DOUBLE PRECISION NOT NULL,
    remote        TEXT,
    user_agent    TEXT
);
CREATE INDEX ix_user_sessions_user ON user_sessions(user_name);
CREATE INDEX ix_user_sessions_expiry ON user_sessions(expires_at);
