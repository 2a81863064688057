"""What a signer may sign: an exact allow-list of endpoints, each a data entry.

Neither exchange signs the path: Bybit signs timestamp + key + window + payload, Binance the
parameters only. A signature obtained for an allowed path could therefore be replayed to
another path with the same payload. Three layers stop that (docs/security.md):

1. Names and values: every parameter must be one the entry allows, non-empty, of its
   format (symbol, decimal, client id...) and, where the entry says so, one of a fixed set
   of values (``category=spot`` only, ``isLeverage=0`` only, documented sides and types).
2. Binding: each entry lists the parameters it *requires*. Binance refuses parameters an
   endpoint does not read (errors.md -1104 UNREAD_PARAMETERS) and parameters it requires
   that are missing, so a signed set that carries an allowed endpoint's mandatory
   parameters cannot authenticate an endpoint that does not take them all. The replay scan
   (libs/exchanges/tests/test_replay_scan.py) checks every signed endpoint of Binance's
   OpenAPI against this.
3. Vault-only entries (``internal``): the permission endpoints the vault itself calls to
   verify a key (Bybit /v5/user/query-api, Binance /sapi/v1/account/apiRestrictions) take
   no parameters of their own, so their signatures would fit many endpoints; they are
   signed only for the vault's own requests and never handed out.

Key verification does the rest: an accepted key can read and trade spot only, so an
endpoint that needs any other permission (margin, futures, transfer, withdraw) refuses
whatever signature it is shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from marketbot.contracts import Exchange, Side
from marketbot.exchanges.errors import SigningRefusedError
from marketbot.exchanges.signer import SigningInput

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_VALUE = re.compile(r"[A-Za-z0-9_.~%+\-]*")
MAX_RECV_WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class EndpointRule:
    """One signable endpoint, as data.

    ``params``: the names it may carry. ``required``: names that must be present (and
    non-empty); ``one_of``: groups of which at least one name must be present. ``values``:
    the only values a name may take. ``formats``: a pattern per name, overriding the
    venue's default formats. ``internal``: signed for the vault's own requests only.
    ``sent_by_vault``: the vault signs it for others only to send it itself (the signature
    never leaves the vault), because no parameter binds its signature to it.
    """

    params: frozenset[str]
    required: frozenset[str] = frozenset()
    one_of: tuple[frozenset[str], ...] = ()
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    formats: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    internal: bool = False
    sent_by_vault: bool = False


def rule(
    *params: str,
    required: Iterable[str] = (),
    one_of: Iterable[Iterable[str]] = (),
    values: Mapping[str, Iterable[str]] | None = None,
    formats: Mapping[str, str] | None = None,
    internal: bool = False,
    sent_by_vault: bool = False,
) -> EndpointRule:
    """An entry: ``rule("symbol", "side", required=("symbol",), values={"side": ("BUY",)})``.

    Required names and ``one_of`` names are allowed names too. ``values`` constrains only
    names the entry allows otherwise (a shared table of values adds no parameter to an
    entry: every extra name an entry accepts widens what its signature could authenticate).
    """
    required_set = frozenset(required)
    groups = tuple(frozenset(group) for group in one_of)
    names = frozenset(params) | required_set
    for group in groups:
        names |= group
    value_sets = {
        name: frozenset(allowed) for name, allowed in (values or {}).items() if name in names
    }
    return EndpointRule(
        params=names,
        required=required_set,
        one_of=groups,
        values=value_sets,
        formats={name: re.compile(pattern) for name, pattern in (formats or {}).items()},
        internal=internal,
        sent_by_vault=sent_by_vault,
    )


def check_values(
    params: Mapping[str, str],
    endpoint: EndpointRule,
    formats: Mapping[str, re.Pattern[str]],
    *,
    exchange: Exchange,
    path: str,
) -> None:
    """Names, presence, emptiness, allowed values and formats; raises on the first fault."""
    unexpected = set(params) - endpoint.params
    if unexpected:
        raise SigningRefusedError(
            f"parameters not allowed on {path}: {sorted(unexpected)}", exchange=exchange
        )
    for name, value in params.items():
        if value == "":
            raise SigningRefusedError(f"parameter {name!r} is empty", exchange=exchange)
        allowed = endpoint.values.get(name)
        if allowed is not None and value not in allowed:
            raise SigningRefusedError(
                f"{name}={value[:40]!r} is not allowed on {path} (allowed: {sorted(allowed)})",
                exchange=exchange,
            )
        pattern = endpoint.formats.get(name) or formats.get(name)
        if pattern is not None and not pattern.fullmatch(value):
            raise SigningRefusedError(
                f"{name}={value[:40]!r} is not a valid {name} ({pattern.pattern})",
                exchange=exchange,
            )
    missing = sorted(endpoint.required - set(params))
    if missing:
        raise SigningRefusedError(
            f"{path} must carry {missing}: a signature is only given for a complete request",
            exchange=exchange,
        )
    for group in endpoint.one_of:
        if not group & set(params):
            raise SigningRefusedError(
                f"{path} must carry one of {sorted(group)}", exchange=exchange
            )


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


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """What an order placement commits the account to, read from the signed payload.

    The vault bounds these by the order request that asked for them (services/keyvault,
    ``domain/bounds.py``). ``quantity`` is in base units, ``quote_quantity`` in quote
    units (a market order sized in quote); ``price`` is the limit price (``None`` for a
    market order); ``client_ids`` are every client order id the payload names (an entry's
    own id; a protection list's list and leg ids).
    """

    symbol: str
    side: Side
    limit: bool
    client_ids: tuple[str, ...]
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    price: Decimal | None = None


class SigningPolicy:
    """``is_allowed`` answers for an exact (method, path); ``validate`` checks a whole request."""

    def __init__(
        self,
        exchange: Exchange,
        endpoints: Mapping[tuple[str, str], EndpointRule],
        check: Callable[[SigningInput, EndpointRule], None],
        terms: Callable[[SigningInput], OrderTerms | None] | None = None,
    ) -> None:
        self.exchange = exchange
        self._endpoints = dict(endpoints)
        self._check = check
        self._terms = terms

    def order_terms(self, request: SigningInput) -> OrderTerms | None:
        """The order a *validated* request places, or ``None`` if it places none."""
        return self._terms(request) if self._terms is not None else None

    @property
    def endpoints(self) -> frozenset[tuple[str, str]]:
        """What the vault signs for others (vault-only entries excluded)."""
        return frozenset(key for key, entry in self._endpoints.items() if not entry.internal)

    @property
    def handed_out(self) -> frozenset[tuple[str, str]]:
        """The entries whose signatures leave the vault (neither internal nor vault-sent)."""
        return frozenset(
            key
            for key, entry in self._endpoints.items()
            if not entry.internal and not entry.sent_by_vault
        )

    def sent_by_vault(self, method: str, path: str) -> bool:
        entry = self._endpoints.get((method, path))
        return entry is not None and entry.sent_by_vault

    def rule_for(self, method: str, path: str) -> EndpointRule | None:
        return self._endpoints.get((method, path))

    def is_allowed(self, method: str, path: str, *, internal: bool = False) -> bool:
        if not isinstance(method, str) or not isinstance(path, str):
            return False
        entry = self._endpoints.get((method, path))
        return entry is not None and (internal or not entry.internal)

    def validate(
        self, request: SigningInput, *, internal: bool = False, sending: bool = False
    ) -> None:
        """Raise ``SigningRefusedError`` unless this exact request may be signed.

        ``internal``: the vault signs for its own request (verification), so vault-only
        entries are allowed too. ``sending``: the signer sends the request itself, so the
        signature does not leave it (required for ``sent_by_vault`` entries).
        """
        if request.exchange is not self.exchange:
            raise SigningRefusedError(
                f"request for {request.exchange} given to the {self.exchange} policy",
                exchange=self.exchange,
            )
        endpoint = self._endpoints.get((request.method, request.path))
        if endpoint is not None and endpoint.internal and not internal:
            endpoint = None
        if endpoint is None:
            raise SigningRefusedError(
                f"{request.method} {request.path[:80]!r} is not a signable endpoint",
                exchange=self.exchange,
            )
        if endpoint.sent_by_vault and not (internal or sending):
            raise SigningRefusedError(
                f"{request.method} {request.path} is sent by the vault itself: its signature "
                "is never handed out (ask with send=true)",
                exchange=self.exchange,
            )
        if not 0 < request.recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise SigningRefusedError("recv_window_ms must be 1..60000", exchange=self.exchange)
        if request.timestamp_ms <= 0:
            raise SigningRefusedError("timestamp_ms must be positive", exchange=self.exchange)
        self._check(request, endpoint)

    def refuse(self, message: str) -> SigningRefusedError:
        return SigningRefusedError(message, exchange=self.exchange)
