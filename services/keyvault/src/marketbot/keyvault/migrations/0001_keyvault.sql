-- One row per registered API key. The secret exists only as ciphertext: encrypted under a
-- per-row data key, which is itself wrapped under master key `master_key_version`.
CREATE TABLE credentials (
    credential_id uuid PRIMARY KEY,
    user_id text NOT NULL,
    exchange text NOT NULL,
    api_key text NOT NULL,
    masked_key text NOT NULL,
    master_key_version integer NOT NULL,
    wrapped_data_key bytea NOT NULL,
    ciphertext bytea NOT NULL,
    -- status: active = the user's current key for the exchange; enabled = usable (the vault
    -- disables a key that stopped working); verified = the last verification passed
    active boolean NOT NULL DEFAULT true,
    enabled boolean NOT NULL DEFAULT true,
    verified boolean NOT NULL DEFAULT false,
    verified_at timestamptz,
    last_checked_at timestamptz,
    last_used_at timestamptz,
    status_message text,
    -- permissions as the exchange reported them at the last verification
    can_read boolean,
    can_trade boolean,
    can_withdraw boolean,
    ip_bound boolean,
    ips text[] NOT NULL DEFAULT '{}',
    expires_at timestamptz,
    warnings text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    revoked_at timestamptz
);

CREATE UNIQUE INDEX credentials_one_active ON credentials (user_id, exchange) WHERE active;
CREATE INDEX credentials_by_master_version ON credentials (master_key_version);
CREATE INDEX credentials_due ON credentials (last_checked_at) WHERE active AND enabled;

-- Every store, verify, sign, refusal, revoke and rotate. Append-only: the database refuses
-- UPDATE, DELETE and TRUNCATE on it.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    action text NOT NULL,
    outcome text NOT NULL,
    user_id text,
    exchange text,
    credential_id uuid,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    correlation_id text
);

CREATE INDEX audit_log_by_credential ON audit_log (credential_id, id);
CREATE INDEX audit_log_by_user ON audit_log (user_id, id);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
