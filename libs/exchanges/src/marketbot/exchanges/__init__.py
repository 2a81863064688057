"""marketbot.exchanges: Bybit V5 and Binance Spot clients behind one ``Venue`` protocol."""
