"""Whatever body, content type or token arrives, the webhook answers 2xx or a JSON 4xx."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from marketbot.contracts import SignalReceived

from .helpers import SOURCE_TOKEN, AppFactory, client_for, make_settings

KEYS = [
    "symbol", "ticker", "action", "side", "price", "close", "time", "timenow", "strategy",
    "sl", "tp", "stop_loss_percent", "take_profit_percent", "exchange", "passphrase", "token",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["buy", "SELL", "close", "BTCUSDT", "2026-11-24T12:00:00Z", "95000", "1e999"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
objects = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), values)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    objects.map(lambda o: json.dumps(o, default=str).encode()),
    st.builds(
        lambda a, s, p, rest: f"{a} {s} @ {p} {rest}".encode(),
        st.sampled_from(["BUY", "sell", "Close", "hold", ""]),
        st.text(max_size=12),
        st.text(max_size=12),
        st.text(max_size=20),
    ),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=utf-16",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        ";;;",
    ]
)
tokens = st.sampled_from([SOURCE_TOKEN, None, "", "wrong", "\u00e9\u00e9"])
sources = st.sampled_from(["tv", "nosuch", "TV", "a" * 80, "%00"])


async def _publish(_signal: SignalReceived) -> bool:
    return False


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, content_type=content_types, token=tokens, source=sources)
@example(
    body=b'{"symbol": "BTCUSDT", "action": "buy", "price": 1e400}',
    content_type="application/json",
    token=SOURCE_TOKEN,
    source="tv",
)
@example(body=b"BUY BTCUSDT @ 95000", content_type=None, token=SOURCE_TOKEN, source="tv")
async def test_arbitrary_bodies_never_get_a_5xx(
    make_app: AppFactory, body: bytes, content_type: str | None, token: str | None, source: str
) -> None:
    app = make_app(make_settings(max_body_bytes=256), publish_signal=_publish)
    headers = {"Content-Type": content_type} if content_type is not None else {}
    params: dict[str, Any] = {"token": token} if token is not None else {}
    async with client_for(app) as api:
        response = await api.post(
            f"/webhooks/tradingview/{source}", content=body, headers=headers, params=params
        )
    assert response.status_code < 500, response.text
    payload = response.json()
    if response.status_code >= 400:
        assert {"code", "message", "field"} <= set(payload["error"])
    else:
        assert response.status_code == 202
        assert payload["signal_id"]
