-- Portcullis schema (SQLite). The seed's three tables with their column names, plus
-- `sessions`, which groups refresh tokens into families. Deviations from the seed are listed
-- in ARCHITECTURE.md. Timestamps are UTC text in one fixed-width format
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so they compare correctly as strings.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT    NOT NULL UNIQUE CHECK (length(user_id) BETWEEN 1 AND 50),
    email          TEXT    NOT NULL UNIQUE COLLATE NOCASE CHECK (length(email) <= 255),
    password_hash  TEXT    NOT NULL,
    full_name      TEXT    NOT NULL CHECK (length(full_name) <= 100),
    organization   TEXT    CHECK (organization IS NULL OR length(organization) <= 100),
    role           TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'researcher')),
    disabled       INTEGER NOT NULL DEFAULT 0,
    email_verified INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    last_login     TEXT
);

CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT,
    user_agent  TEXT,
    ip_address  TEXT
);
CREATE INDEX idx_sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  TEXT    NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    user_id     TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    session_id  TEXT    NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0,
    rotated_at  TEXT,
    user_agent  TEXT,
    ip_address  TEXT
);
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX idx_refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id      TEXT    NOT NULL UNIQUE,
    key_hash    TEXT    NOT NULL UNIQUE CHECK (length(key_hash) = 64),
    key_hint    TEXT    NOT NULL,
    user_id     TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at  TEXT    NOT NULL,
    expires_at  TEXT,
    last_used   TEXT,
    disabled    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_api_keys_user ON api_keys (user_id);
