"""A paper exchange speaking Bybit V5 and Binance Spot, plus the market-data APIs."""
