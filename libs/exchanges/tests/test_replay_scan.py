"""Endpoint replay: which documented signed endpoints could a vault signature authenticate?

Neither exchange signs the path (Binance signs the parameters only, whatever the method:
rest-api.md "SIGNED Endpoint Examples"; Bybit signs timestamp + key + window + the query
or the JSON body: guide.mdx). A signature the vault gives for an allowed endpoint A over a
parameter set P therefore authenticates another endpoint E whenever E accepts P:

- Binance refuses a parameter an endpoint does not read (errors.md -1104
  UNREAD_PARAMETERS) and a missing mandatory one, so E accepts P only when
  ``required(E) <= P <= params(E)``;
- the vault signs P only when ``required(A) <= P <= allowed(A)`` (policy entries).

So E is reachable from A exactly when ``required(E) | required(A) <= allowed(A) & params(E)``
(and A's one-of groups can be met inside that). The scan runs this over every signed
endpoint of Binance's OpenAPI (and the Bybit reference pages), then checks that whatever
is still reachable needs a permission an accepted key cannot have (Margin: the vault
refuses keys with margin), or reads the account's own spot data (an accepted key can read),
or places at most the spot order the vault signed for (order test, SOR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from marketbot.contracts import Exchange
from marketbot.exchanges.binance import constants as c
from marketbot.exchanges.policy import EndpointRule
from marketbot.exchanges.signing import signing_policy

REFERENCE = Path(__file__).parent / "fixtures" / "reference"  # copies of the official docs
OPENAPI = REFERENCE / "binance-spot" / "openapi.yaml"
BYBIT_PAGES = REFERENCE / "bybit-v5"


@dataclass(frozen=True)
class Documented:
    method: str
    path: str
    params: frozenset[str]
    required: frozenset[str]
    summary: str
    tags: tuple[str, ...]


def binance_signed_endpoints() -> dict[tuple[str, str], Documented]:
    spec = yaml.safe_load(OPENAPI.read_text())
    shared = spec["components"]["parameters"]
    found: dict[tuple[str, str], Documented] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            params = [
                shared[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
                for p in operation.get("parameters", [])
            ]
            names = {p["name"] for p in params}
            if "signature" not in names:
                continue
            required = {p["name"] for p in params if p.get("required")}
            found[(method.upper(), path)] = Documented(
                method.upper(),
                path,
                frozenset(names - {"signature"}),
                frozenset(required - {"signature"}),
                operation.get("summary", ""),
                tuple(operation.get("tags", [])),
            )
    return found


def reachable(allowed: EndpointRule, target: Documented) -> bool:
    """Can a parameter set the vault signs for ``allowed`` be accepted by ``target``?"""
    lower = target.required | allowed.required
    upper = allowed.params & target.params
    if not lower <= upper:
        return False
    return all(group & upper for group in allowed.one_of)


def binance_replays() -> list[tuple[tuple[str, str], Documented]]:
    policy = signing_policy(Exchange.BINANCE)
    documented = binance_signed_endpoints()
    found = []
    for key in sorted(policy.endpoints - WS_API):  # WS API: see the test on apiKey
        entry = policy.rule_for(*key)
        assert entry is not None
        for target_key, target in documented.items():
            if target_key in policy.endpoints:
                continue
            if reachable(entry, target):
                found.append((key, target))
    return found


WS_API = frozenset({(c.WS_API_METHOD, c.USER_DATA_SUBSCRIBE_SIGNATURE)})

SPOT_ORDER_EQUIVALENTS = {
    # The same spot order, validated only (no effect) or routed by SOR (a spot order on the
    # same symbol, side and quantity the vault already signed for: rest-api.md "SOR").
    ("POST", "/api/v3/order/test"),
    ("POST", "/api/v3/sor/order"),
    ("POST", "/api/v3/sor/order/test"),
}


def test_the_openapi_is_scanned_whole() -> None:
    documented = binance_signed_endpoints()
    assert len(documented) > 250  # every signed endpoint of the spec, not a sample
    allowed = signing_policy(Exchange.BINANCE).endpoints - WS_API
    assert allowed <= set(documented) | {("GET", "/api/v3/account")}


def test_a_ws_api_signature_cannot_be_replayed_on_rest() -> None:
    """The WS API payload the vault signs always carries the vault's own ``apiKey`` (the
    caller may not send it), and no signed REST endpoint reads ``apiKey``: Binance refuses a
    REST request with an unread parameter (errors.md -1104), so the signature fits none."""
    readers = [k for k, e in binance_signed_endpoints().items() if "apiKey" in e.params]
    assert readers == []
    assert "apiKey" not in signing_policy(Exchange.BINANCE).rule_for(*next(iter(WS_API))).params


def test_no_binance_signature_authenticates_an_endpoint_an_accepted_key_can_misuse() -> None:
    """Every endpoint still reachable needs margin (never on an accepted key), only reads
    the account's own spot data, or is the very spot order that was signed."""
    offenders = []
    for source, target in binance_replays():
        if "Margin" in target.tags:
            continue  # needs margin: key verification refuses enableMargin keys
        if "Trade" in target.tags and target.method == "GET":
            continue  # the account's own spot reads: an accepted key may read
        if (target.method, target.path) in SPOT_ORDER_EQUIVALENTS:
            continue
        offenders.append((source, target.method, target.path, target.summary))
    assert offenders == []


def test_the_known_replays_of_the_issue_are_closed() -> None:
    reached = {(s, (t.method, t.path)) for s, t in binance_replays()}
    sources = {s for s, _ in reached}
    # an /api/v3/account signature authenticated enableFastWithdrawSwitch
    assert not any(t == ("POST", "/sapi/v1/account/enableFastWithdrawSwitch") for _, t in reached)
    # no write outside Margin and the spot-order equivalents
    writes = {t for _, t in reached if t[0] != "GET"}
    assert {t for t in writes if not t[1].startswith("/sapi/v1/margin/")} == (
        SPOT_ORDER_EQUIVALENTS
    )
    # DELETE /api/v3/openOrders (cancel every order on a symbol) is reachable from nothing
    assert not any(t == ("DELETE", "/api/v3/openOrders") for _, t in reached)
    assert ("GET", "/api/v3/account") not in sources
    assert ("GET", "/sapi/v1/account/apiRestrictions") not in sources


def test_binding_is_what_closes_them() -> None:
    """Without the required parameters (names only, as before) the scan finds far more."""
    policy = signing_policy(Exchange.BINANCE)
    documented = binance_signed_endpoints()
    loose = 0
    for key in policy.endpoints:
        entry = policy.rule_for(*key)
        assert entry is not None
        names_only = EndpointRule(params=entry.params)
        loose += sum(
            1
            for k, t in documented.items()
            if k not in policy.endpoints and reachable(names_only, t)
        )
    assert loose > 100 > len(binance_replays())


# --------------------------------------------------------------------------- Bybit pages

_ENDPOINT = re.compile(r'<APIEndpoint method="(GET|POST)" url="([^"]+)"')
_ROW = re.compile(r"^\|\s*\[?([A-Za-z]+)\]?(?:\([^)]*\))?\s*\|\s*(\*\*true\*\*|true|false)", re.M)


def bybit_documented() -> dict[tuple[str, str], tuple[frozenset[str], frozenset[str], set[str]]]:
    """(method, path) -> (parameters, required ones, the categories it documents)."""
    found = {}
    for page in sorted(BYBIT_PAGES.glob("*.mdx")):
        text = page.read_text()
        match = _ENDPOINT.search(text)
        if match is None or match.group(2).startswith("/v5/market/"):
            continue  # market data is public: no signature authenticates it or is needed
        request = text[match.end() : text.find("### Response", match.end())]
        rows = _ROW.findall(request)
        names = frozenset(name for name, _ in rows)
        required = frozenset(name for name, flag in rows if "true" in flag)
        category_row = next(
            (line for line in request.splitlines() if line.startswith("|[category]")), ""
        )
        categories = set(re.findall(r"`([a-z]+)`", category_row))
        found[(match.group(1), match.group(2))] = (names, required, categories)
    return found


def test_bybit_signatures_fit_no_other_documented_endpoint() -> None:
    """Bybit does not document refusing unknown parameters, so only a target's mandatory
    parameters and values count: /v5/position/list requires category linear, inverse or
    option (position_position.mdx), and the vault signs category=spot only."""
    documented = bybit_documented()
    assert ("GET", "/v5/position/list") in documented
    assert documented[("GET", "/v5/position/list")][2] == {"linear", "inverse", "option"}
    policy = signing_policy(Exchange.BYBIT)
    reached = []
    for key in policy.endpoints:
        entry = policy.rule_for(*key)
        assert entry is not None
        for target_key, (_names, required, categories) in documented.items():
            if target_key in policy.endpoints or target_key[0] != key[0]:
                continue
            if target_key == ("GET", "/v5/user/query-api"):
                continue  # the vault's own entry (internal): never handed out
            if target_key == ("POST", "/v5/account/demo-apply-money"):
                continue  # demo trading only (demo.mdx: api-demo.bybit.com), adds demo funds
            if not required <= entry.params:
                continue
            signed = entry.values.get("category")
            if "category" in required and signed is not None and not signed & categories:
                continue
            reached.append((key, target_key))
    assert reached == []
