-- Orders whose outcome is unknown are resolved by the reconciler (reconcile.py), not by the
-- request that sent them: when each is due for its next lookup by client order id.
ALTER TABLE orders ADD COLUMN reconcile_at timestamptz;
CREATE INDEX orders_unknown ON orders (unknown_since)
    WHERE state = 'SENDING' AND unknown_since IS NOT NULL;
