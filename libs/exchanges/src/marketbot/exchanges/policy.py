"""What a signer may sign: an exact allow-list of endpoints, each with its allowed parameters.

Neither exchange signs the path: Bybit signs timestamp + key + window + payload, Binance the
parameters only. A signature obtained for an allowed path could therefore be replayed to
another path with the same payload, so the policy checks the *parameters* too: a request
whose parameters are not all in the endpoint's documented set (e.g. ``address``,
``amount`` of a withdrawal) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from marketbot.contracts import Exchange
from marketbot.exchanges.errors import SigningRefusedError
from marketbot.exchanges.signer import SigningInput

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_VALUE = re.compile(r"[A-Za-z0-9_.~%+\-]*")
MAX_RECV_WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class EndpointRule:
    """One signable endpoint: the parameter names it may carry."""

    params: frozenset[str]


def rule(*params: str) -> EndpointRule:
    return EndpointRule(frozenset(params))


def parse_params(text: str, *, exchange: Exchange) -> list[tuple[str, str]]:
    """Split ``a=1&b=2`` strictly: every pair well formed, keys plain, values percent-encoded."""
    if text == "":
        return []
    pairs: list[tuple[str, str]] = []
    for part in text.split("&"):
        key, sep, value = part.partition("=")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise SigningRefusedError(f"malformed parameter {part[:40]!r}", exchange=exchange)
        pairs.append((key, value))
    return pairs


def unique_keys(pairs: list[tuple[str, str]], *, exchange: Exchange) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in pairs:
        if key in result:
            raise SigningRefusedError(f"parameter {key!r} appears twice", exchange=exchange)
        result[key] = value
    return result


class SigningPolicy:
    """``is_allowed`` answers for an exact (method, path); ``validate`` checks a whole request."""

    def __init__(
        self,
        exchange: Exchange,
        endpoints: Mapping[tuple[str, str], EndpointRule],
        check: Callable[[SigningInput, EndpointRule], None],
    ) -> None:
        self.exchange = exchange
        self._endpoints = dict(endpoints)
        self._check = check

    @property
    def endpoints(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._endpoints)

    def is_allowed(self, method: str, path: str) -> bool:
        if not isinstance(method, str) or not isinstance(path, str):
            return False
        return (method, path) in self._endpoints

    def validate(self, request: SigningInput) -> None:
        """Raise ``SigningRefusedError`` unless this exact request may be signed."""
        if request.exchange is not self.exchange:
            raise SigningRefusedError(
                f"request for {request.exchange} given to the {self.exchange} policy",
                exchange=self.exchange,
            )
        endpoint = self._endpoints.get((request.method, request.path))
        if endpoint is None:
            raise SigningRefusedError(
                f"{request.method} {request.path[:80]!r} is not a signable endpoint",
                exchange=self.exchange,
            )
        if not 0 < request.recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise SigningRefusedError("recv_window_ms must be 1..60000", exchange=self.exchange)
        if request.timestamp_ms <= 0:
            raise SigningRefusedError("timestamp_ms must be positive", exchange=self.exchange)
        self._check(request, endpoint)

    def refuse(self, message: str) -> SigningRefusedError:
        return SigningRefusedError(message, exchange=self.exchange)
