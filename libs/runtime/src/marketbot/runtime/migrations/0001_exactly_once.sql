-- Event ids a consumer has applied; written in the same transaction as the effect.
CREATE TABLE processed_events (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events to publish, written in the same transaction as the state that caused them, and
-- deleted once JetStream has acknowledged them.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    subject text NOT NULL,
    event_type text NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Messages that can never be applied (undecodable, or refused by the handler as permanent).
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    subject text NOT NULL,
    stream_sequence bigint,
    payload bytea NOT NULL,
    error text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
