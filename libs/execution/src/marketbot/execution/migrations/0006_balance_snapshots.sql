-- Each followed account's balance snapshot, kept across executor restarts (balances.py,
-- snapshots.py): what the wallet stream kept current, written off the hot path (the
-- changed accounts every second or so, in one statement). ``taken_at`` is the last time
-- (database time) the snapshot was known current: its stream up, refreshed since it came
-- up. At start-up (or when an account is taken over from another replica) a snapshot
-- younger than ``balance_snapshot_max_age_s`` sizes the account's orders until the
-- background refresh reads the balance again.
CREATE TABLE balance_snapshots (
    exchange text NOT NULL,
    user_id text NOT NULL,
    balances jsonb NOT NULL,
    taken_at timestamptz NOT NULL,
    PRIMARY KEY (exchange, user_id)
);
