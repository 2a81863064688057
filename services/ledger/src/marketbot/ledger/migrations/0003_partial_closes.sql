-- Parts of a position sold before its close (PositionReduced): the totals so far. The
-- close (PositionClosed) carries the totals over every part, so commission and realised
-- profit are still read from the close.
ALTER TABLE operations ADD COLUMN reduced_event_id uuid;
ALTER TABLE operations ADD COLUMN reduced_at timestamptz;
ALTER TABLE operations ADD COLUMN reduced_quantity numeric;
ALTER TABLE operations ADD COLUMN remaining_quantity numeric;
ALTER TABLE operations ADD COLUMN reduced_fees numeric;
ALTER TABLE operations ADD COLUMN reduced_pnl numeric;
