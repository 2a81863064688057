-- Which executor replica follows an account's private stream: one row per (exchange,
-- account) with its owner and a lease the owner renews; a lapsed lease is taken over by
-- another replica. ``covered``: the owner's own view of whether its stream answers for
-- the account (live, or down for less than the stale time), so other replicas' trackers
-- leave the account's positions to it.
CREATE TABLE stream_followers (
    exchange text NOT NULL,
    user_id text NOT NULL,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL,
    covered boolean NOT NULL DEFAULT false,
    PRIMARY KEY (exchange, user_id)
);
CREATE INDEX stream_followers_by_owner ON stream_followers (exchange, owner);
