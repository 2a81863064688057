"""The outside world: the ledger's PostgreSQL tables."""
