-- A position sold in parts: ``quantity`` and ``entry_fees_quote`` are what is still open;
-- these add up the parts sold so far (their exit notional, their fees: the entry fees
-- charged to them pro rata and their exit fees, and their realised profit), so the close
-- of the remainder reports the totals over every part.
ALTER TABLE positions ADD COLUMN sold_quantity numeric NOT NULL DEFAULT 0;
ALTER TABLE positions ADD COLUMN sold_quote numeric NOT NULL DEFAULT 0;
ALTER TABLE positions ADD COLUMN sold_fees_quote numeric NOT NULL DEFAULT 0;
ALTER TABLE positions ADD COLUMN sold_pnl numeric NOT NULL DEFAULT 0;
