"""Rate-limit metrics must not leak users' API keys."""

from __future__ import annotations


async def test_per_key_buckets_never_put_the_api_key_in_a_metric() -> None:
    from prometheus_client import REGISTRY

    from marketbot.contracts import Exchange
    from marketbot.exchanges.ratelimit import PER_KEY, RateLimiter
    from marketbot.runtime.clock import ManualClock

    limiter = RateLimiter(Exchange.BYBIT, ManualClock())
    api_key = "CANARYKEY123456789"
    per_key = limiter.bucket((PER_KEY, api_key, "/v5/order/create"), 20, 1.0)
    per_ip = limiter.bucket(("ip",), 600, 5.0)
    await limiter.acquire([(per_key, 1), (per_ip, 1)])
    assert api_key not in per_key.name
    exported = [
        sample.labels.get("bucket", "")
        for metric in REGISTRY.collect()
        if metric.name == "marketbot_exchange_rate_limit_headroom_ratio"
        for sample in metric.samples
    ]
    assert "ip" in exported
    assert not any(api_key in label or label.startswith(PER_KEY) for label in exported)
