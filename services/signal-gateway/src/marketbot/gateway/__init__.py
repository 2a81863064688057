"""marketbot.gateway: the public HTTP edge (TradingView webhooks, user/admin API, push)."""
