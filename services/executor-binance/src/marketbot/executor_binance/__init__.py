"""The Binance executor: the shared execution engine wired to the Binance venue."""
