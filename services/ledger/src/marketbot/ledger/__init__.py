"""marketbot.ledger: operations, fills, PnL and commissions projected from the event stream."""
