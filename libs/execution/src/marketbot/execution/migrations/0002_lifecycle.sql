-- The position lifecycle (domain/lifecycle.py): protection as its own step, exits by id.

-- An entry is a bounded IOC limit order: the worst price it accepts, and the bound's source.
ALTER TABLE orders ADD COLUMN limit_price numeric;
ALTER TABLE orders ADD COLUMN max_slippage_percent numeric;
-- ENTRY (an OrderRequested BUY), CLOSE (an OrderRequested SELL: closes every open position
-- of the user in the symbol) or EXIT (a watched TP/SL leg fired by the tracker; its client
-- order id is the leg's own).
ALTER TABLE orders ADD COLUMN purpose text NOT NULL DEFAULT 'ENTRY';
ALTER TABLE orders ADD COLUMN closes_positions text[];
ALTER TABLE orders ADD COLUMN exit_kind text;
UPDATE orders SET purpose = 'CLOSE', closes_positions = ARRAY[closes_position]
    WHERE closes_position IS NOT NULL;

-- UNPROTECTED until every native exit leg has been seen working on the exchange.
ALTER TABLE positions ADD COLUMN phase text NOT NULL DEFAULT 'UNPROTECTED';
-- Raised when the legs ended without executing and the position is protected anew: every
-- leg id derives from (entry id, leg, generation), so an id is never reused.
ALTER TABLE positions ADD COLUMN generation integer NOT NULL DEFAULT 0;
-- Committed before each protect attempt; 'no legs found' is conclusive only after settle.
ALTER TABLE positions ADD COLUMN protect_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE positions ADD COLUMN protect_settle_until timestamptz;
ALTER TABLE positions ADD COLUMN protect_error text;
ALTER TABLE positions ADD COLUMN fees_estimated boolean NOT NULL DEFAULT false;
ALTER TABLE positions ADD COLUMN exit_client_order_id text;
-- Set while a close order (signal or watched leg) owns the position.
ALTER TABLE positions ADD COLUMN closing_order text;
UPDATE positions SET phase = 'CLOSED' WHERE status = 'CLOSED';
CREATE INDEX positions_unprotected ON positions (opened_at)
    WHERE status = 'OPEN' AND phase = 'UNPROTECTED';
