-- The ledger's projections. Every value here comes from an event (no processing timestamps),
-- so a rebuild from the streams reproduces these tables byte for byte.

-- One row per (decision, user); operation_id = the order request id. Sections are owned by
-- the event that wrote them (see marketbot.ledger.domain.operation).
CREATE TABLE operations (
    operation_id uuid PRIMARY KEY,
    signal_id uuid NOT NULL,
    decision_id uuid NOT NULL,
    user_id text NOT NULL,
    exchange text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    plan text NOT NULL,
    client_order_id text NOT NULL,
    currency text NOT NULL,
    commission_rate numeric NOT NULL,
    identity_event_id uuid NOT NULL,
    identity_rank smallint NOT NULL,
    status text NOT NULL,
    sort_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    requested_event_id uuid,
    requested_at timestamptz,
    priority integer,
    requested_price numeric,
    allocation numeric,
    allocation_currency text,
    placed_event_id uuid,
    placed_at timestamptz,
    placed_order_id text,
    placed_quantity numeric,
    placed_quote_amount numeric,
    placed_price numeric,
    stop_loss_price numeric,
    take_profit_price numeric,
    unknown_event_id uuid,
    unknown_since timestamptz,
    unknown_detail text,
    rejected_event_id uuid,
    rejected_at timestamptz,
    reject_reason text,
    reject_message text,
    reject_code text,
    filled_event_id uuid,
    filled_at timestamptz,
    filled_order_id text,
    filled_quantity numeric,
    average_price numeric,
    filled_quote numeric,
    entry_fees numeric,
    closed_event_id uuid,
    closed_at timestamptz,
    closed_order_id text,
    close_reason text,
    closed_quantity numeric,
    entry_price numeric,
    exit_price numeric,
    fees_quote numeric,
    realized_pnl numeric,
    commission numeric
);
CREATE INDEX operations_by_user ON operations (user_id, sort_at DESC, operation_id DESC);
CREATE INDEX operations_by_user_status
    ON operations (user_id, status, sort_at DESC, operation_id DESC);
CREATE INDEX operations_by_user_symbol
    ON operations (user_id, symbol, sort_at DESC, operation_id DESC);
CREATE INDEX operations_by_signal ON operations (signal_id);
CREATE INDEX operations_by_filled ON operations (filled_at) WHERE filled_at IS NOT NULL;
CREATE INDEX operations_by_closed ON operations (closed_at) WHERE closed_at IS NOT NULL;

CREATE TABLE fills (
    operation_id uuid NOT NULL,
    trade_id text NOT NULL,
    event_id uuid NOT NULL,
    price numeric NOT NULL,
    quantity numeric NOT NULL,
    fee numeric NOT NULL,
    fee_asset text NOT NULL,
    fee_quote numeric NOT NULL,
    filled_at timestamptz NOT NULL,
    PRIMARY KEY (operation_id, trade_id)
);

-- A position is a filled operation; realized PnL once it is closed.
CREATE VIEW positions AS
SELECT operation_id, user_id, exchange, symbol, side,
       coalesce(closed_quantity, filled_quantity) AS quantity,
       coalesce(entry_price, average_price) AS entry_price,
       exit_price, fees_quote, realized_pnl, filled_at AS opened_at, closed_at,
       closed_at IS NOT NULL AS closed
FROM operations
WHERE filled_at IS NOT NULL OR closed_at IS NOT NULL;

-- The platform's commission per closed operation with positive realized PnL, and the
-- referrer's share of it (affiliate commission).
CREATE TABLE commissions (
    operation_id uuid PRIMARY KEY,
    user_id text NOT NULL,
    plan text NOT NULL,
    currency text NOT NULL,
    rate numeric NOT NULL,
    realized_pnl numeric NOT NULL,
    amount numeric NOT NULL,
    referrer_id text,
    affiliate_rate numeric,
    affiliate_amount numeric,
    accrued_at timestamptz NOT NULL
);
CREATE INDEX commissions_by_user ON commissions (user_id, accrued_at DESC, operation_id);
CREATE INDEX commissions_by_referrer
    ON commissions (referrer_id, accrued_at DESC, operation_id) WHERE referrer_id IS NOT NULL;
CREATE INDEX commissions_by_day ON commissions (accrued_at);

-- Who referred whom, from when (UserRegistered.referrer_id, ReferrerAssigned).
CREATE TABLE referrer_changes (
    user_id text NOT NULL,
    effective_at timestamptz NOT NULL,
    event_id uuid NOT NULL,
    referrer_id text,
    PRIMARY KEY (user_id, effective_at, event_id)
);

-- For the signal trace: the signal and the decision, as they were published.
CREATE TABLE signals (
    signal_id uuid PRIMARY KEY,
    event_id uuid NOT NULL,
    received_at timestamptz NOT NULL,
    payload jsonb NOT NULL
);

CREATE TABLE decisions (
    decision_id uuid PRIMARY KEY,
    signal_id uuid NOT NULL,
    event_id uuid NOT NULL,
    decided_at timestamptz NOT NULL,
    payload jsonb NOT NULL
);
CREATE INDEX decisions_by_signal ON decisions (signal_id);
