"""Pure ledger logic: the operation merge, commission math, statements. No I/O."""
