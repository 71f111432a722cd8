-- People who use the gateway: console logins and the owners of API tokens (gateway.store.identity).
-- A user is never deleted, only disabled, so the audit trail's names keep meaning something.

CREATE TABLE users (
    name              TEXT PRIMARY KEY,     -- lower-case login name, as the audit trail records it
    display_name      TEXT,
    role              TEXT NOT NULL,        -- engineer | operator | supervisor | auditor
    systems           TEXT,                 -- operator: JSON list of the systems it is bound to; NULL: all
    password_hash     TEXT,                 -- Argon2id (PHC string); NULL: no console login
    password_set_at   REAL,
    created_at        REAL NOT NULL,
    created_by        TEXT NOT NULL,
    updated_at        REAL NOT NULL,
    disabled_at       REAL,
    last_login_at     REAL
);
