-- The order requests the vault bounds order placements by (issue 14), copied from the
-- ORDER_REQUESTS stream (only the decision service may publish there), and what the vault
-- has signed for each: how many times, and the largest base quantity of an entry.
CREATE TABLE order_requests (
    request_id uuid PRIMARY KEY,
    client_order_id text NOT NULL UNIQUE,
    user_id text NOT NULL,
    exchange text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    risk_level text NOT NULL,
    reference_price numeric,
    allocation numeric,
    allocation_currency text,
    requested_at timestamptz NOT NULL,
    signs integer NOT NULL DEFAULT 0,
    signed_quantity numeric,
    signed_at timestamptz
);

-- The free quote balance the vault last read with the user's own key: the base of an
-- entry's size bound. Read at verification and again when an entry exceeds it.
CREATE TABLE balances (
    user_id text NOT NULL,
    exchange text NOT NULL,
    asset text NOT NULL,
    free numeric NOT NULL,
    read_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, exchange, asset)
);
