"""The outside world: market-data providers, the eligibility repository, the publisher."""
