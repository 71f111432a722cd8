-- Console sessions, server-side. The session id lives only in the browser's cookie;
-- the store keeps its SHA-256, so a copy of the database opens no session.

CREATE TABLE user_sessions (
    id_hash       TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES users(name),
    created_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    expires_at    REAL NOT NULL,            -- absolute end, whatever the activity
    remote        TEXT,
    user_agent    TEXT
);
CREATE INDEX ix_user_sessions_user ON user_sessions(user_name);
CREATE INDEX ix_user_sessions_expiry ON user_sessions(expires_at);
