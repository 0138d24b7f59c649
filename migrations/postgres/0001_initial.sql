-- Portcullis schema (PostgreSQL). The seed's tables, column names and index names, plus
-- `sessions`, which groups refresh tokens into families. Deviations from the seed are listed
-- in ARCHITECTURE.md.

CREATE TABLE users (
    id             SERIAL PRIMARY KEY,
    user_id        VARCHAR(50)  NOT NULL,
    -- Always stored lower-cased (the CHECK), so the unique constraint is case-insensitive:
    -- two registrations differing only in case cannot both succeed.
    email          VARCHAR(255) NOT NULL CHECK (email = lower(email)),
    password_hash  VARCHAR(255) NOT NULL,
    full_name      VARCHAR(100) NOT NULL,
    organization   VARCHAR(100),
    role           VARCHAR(20)  NOT NULL DEFAULT 'user'
                   CHECK (role IN ('user', 'admin', 'researcher')),
    disabled       BOOLEAN      NOT NULL DEFAULT false,
    email_verified BOOLEAN      NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    last_login     TIMESTAMPTZ,
    CONSTRAINT idx_users_user_id UNIQUE (user_id),
    CONSTRAINT idx_users_email UNIQUE (email)
);

CREATE TABLE sessions (
    id          SERIAL PRIMARY KEY,
    session_id  VARCHAR(50) NOT NULL,
    user_id     VARCHAR(50) NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    user_agent  VARCHAR(255),
    ip_address  VARCHAR(45),
    CONSTRAINT idx_sessions_session_id UNIQUE (session_id)
);
CREATE INDEX idx_sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id          SERIAL PRIMARY KEY,
    token_hash  VARCHAR(64) NOT NULL,
    user_id     VARCHAR(50) NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    session_id  VARCHAR(50) NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked     BOOLEAN     NOT NULL DEFAULT false,
    rotated_at  TIMESTAMPTZ,
    user_agent  VARCHAR(255),
    ip_address  VARCHAR(45),
    CONSTRAINT idx_refresh_tokens_hash UNIQUE (token_hash)
);
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX idx_refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE api_keys (
    id          SERIAL PRIMARY KEY,
    key_id      VARCHAR(50)  NOT NULL,
    key_hash    VARCHAR(64)  NOT NULL,
    key_hint    VARCHAR(64)  NOT NULL,
    user_id     VARCHAR(50)  NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name        VARCHAR(100) NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ,
    last_used   TIMESTAMPTZ,
    disabled    BOOLEAN      NOT NULL DEFAULT false,
    CONSTRAINT idx_api_keys_key UNIQUE (key_hash),
    CONSTRAINT idx_api_keys_key_id UNIQUE (key_id)
);
CREATE INDEX idx_api_keys_user ON api_keys (user_id);
