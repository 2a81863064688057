-- The eligible-user projection (from ACCOUNTS and KEYS; rebuilt by replay).
CREATE TABLE users (
    user_id text PRIMARY KEY,
    registered_at timestamptz,
    plan text,
    subscription_status text,
    expires_at timestamptz,
    subscription_changed_at timestamptz,
    preferred_exchange text,
    risk_level text,
    trading_mode text,
    allocation numeric,
    allocation_currency text,
    preferences_changed_at timestamptz
);
CREATE INDEX users_tradable ON users (subscription_status, trading_mode, preferred_exchange);

CREATE TABLE api_keys (
    credential_id uuid PRIMARY KEY,
    user_id text NOT NULL,
    exchange text NOT NULL,
    status text NOT NULL,
    can_trade boolean NOT NULL DEFAULT false,
    key_expires_at timestamptz,
    changed_at timestamptz NOT NULL
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, exchange);

-- Every decision, as published (audit and replay); one per signal.
CREATE TABLE decisions (
    signal_id uuid PRIMARY KEY,
    decision_id uuid NOT NULL UNIQUE,
    action text NOT NULL,
    confidence integer NOT NULL,
    decided_at timestamptz NOT NULL,
    payload jsonb NOT NULL
);

-- Fan-out of one decision: the recipients are frozen at the first attempt, so a redelivered
-- decision republishes exactly the same requests (same ids: JetStream drops the duplicates).
CREATE TABLE fanouts (
    decision_id uuid PRIMARY KEY,
    action text NOT NULL,
    recipients integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

CREATE TABLE fanout_recipients (
    decision_id uuid NOT NULL,
    user_id text NOT NULL,
    plan text NOT NULL,
    exchange text NOT NULL,
    risk_level text NOT NULL,
    allocation numeric,
    allocation_currency text,
    PRIMARY KEY (decision_id, user_id)
);
