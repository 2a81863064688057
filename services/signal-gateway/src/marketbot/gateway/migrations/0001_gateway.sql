-- Users as the admin API manages them; the bearer token is stored only as its SHA-256.
CREATE TABLE users (
    user_id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    display_name text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    plan text NOT NULL,
    subscription_status text NOT NULL,
    expires_at timestamptz,
    trading_mode text NOT NULL,
    preferred_exchange text NOT NULL,
    risk_level text NOT NULL,
    allocation numeric,
    allocation_currency text,
    referrer_id text REFERENCES users (user_id),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX users_created_at ON users (created_at, user_id);

-- Webhook sources created through the admin API (sources may also come from settings).
CREATE TABLE webhook_sources (
    name text PRIMARY KEY,
    token_hash text NOT NULL,
    created_at timestamptz NOT NULL
);
