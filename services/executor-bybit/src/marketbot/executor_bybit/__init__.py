"""The Bybit executor: the shared execution engine wired to the Bybit venue."""
