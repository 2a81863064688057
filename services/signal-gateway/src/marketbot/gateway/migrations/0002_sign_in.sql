-- Sign-in for people (the web app): a password hashed with argon2id, set by the operator, and
-- the session tokens a sign-in issues (stored only as SHA-256, with an expiry).
ALTER TABLE users ADD COLUMN password_hash text;

CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    user_id text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
