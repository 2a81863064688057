-- Positions as the exchanges run them (executor v2 events): the entry's price bound, exits
-- named by their own client id, fees marked when estimated, fills with the exchange's time.
ALTER TABLE operations ADD COLUMN limit_price numeric;
ALTER TABLE operations ADD COLUMN max_slippage_percent numeric;
ALTER TABLE operations ADD COLUMN entry_fees_estimated boolean;
ALTER TABLE operations ADD COLUMN exit_client_order_id text;
ALTER TABLE operations ADD COLUMN fees_estimated boolean;
ALTER TABLE fills ADD COLUMN fee_price numeric;
ALTER TABLE fills ADD COLUMN fee_estimated boolean NOT NULL DEFAULT false;
