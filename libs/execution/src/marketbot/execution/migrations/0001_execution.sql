-- One row per client order id, written BEFORE the order is sent (blueprint rule 5).
CREATE TABLE orders (
    client_order_id   text PRIMARY KEY,
    request_id        uuid NOT NULL,
    user_id           text NOT NULL,
    symbol            text NOT NULL,
    side              text NOT NULL,
    plan              text NOT NULL,
    request           jsonb NOT NULL,
    state             text NOT NULL,  -- SENDING | PLACED | FILLED | REJECTED
    attempts          integer NOT NULL DEFAULT 0,
    last_attempt_at   timestamptz,
    settle_until      timestamptz,    -- 'not found' is conclusive only after this moment
    quantity          numeric,
    quote_amount      numeric,
    reference_price   numeric,
    stop_loss_price   numeric,
    take_profit_price numeric,
    closes_position   text,           -- for a close order: the entry's client order id
    exchange_order_id text,
    unknown_since     timestamptz,
    lease_owner       text,
    lease_until       timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX orders_placed ON orders (state) WHERE state = 'PLACED';

-- A filled entry is a position, tracked until its TP/SL leg fills or a close signal arrives.
CREATE TABLE positions (
    entry_client_order_id text PRIMARY KEY REFERENCES orders (client_order_id),
    user_id           text NOT NULL,
    symbol            text NOT NULL,
    side              text NOT NULL,
    request           jsonb NOT NULL,
    base_asset        text NOT NULL,
    quote_asset       text NOT NULL,
    quantity          numeric NOT NULL,  -- held: filled less base fees, on the step
    filled_quantity   numeric NOT NULL,
    entry_price       numeric NOT NULL,
    entry_fees_quote  numeric NOT NULL,
    entry_order_id    text NOT NULL,
    stop_loss_price   numeric,
    take_profit_price numeric,
    exits             jsonb NOT NULL,    -- [{kind, trigger_price, exchange_order_id, client_order_id}]
    exit_error        text,
    opened_at         timestamptz NOT NULL,
    status            text NOT NULL,     -- OPEN | CLOSED
    check_interval_s  double precision NOT NULL,
    next_check_at     timestamptz NOT NULL,
    closed_at         timestamptz,
    close_reason      text,
    exit_order_id     text,
    exit_price        numeric,
    realized_pnl      numeric
);
CREATE INDEX positions_due ON positions (next_check_at) WHERE status = 'OPEN';
CREATE INDEX positions_by_user ON positions (user_id, symbol) WHERE status = 'OPEN';
