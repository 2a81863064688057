"""Pure execution rules: sizing, protection prices, PnL. No I/O."""
