"""Endpoint replay: which documented signed endpoints could a vault signature authenticate?

Neither exchange signs the path (Binance signs the parameters only, whatever the method:
rest-api.md "SIGNED Endpoint Examples"; Bybit signs timestamp + key + window + the query
or the JSON body: guide.mdx). A signature the vault gives for an allowed endpoint A over a
parameter set P therefore authenticates another endpoint E whenever E accepts P:

- Binance refuses a parameter an endpoint does not read (errors.md -1104
  UNREAD_PARAMETERS) and a missing mandatory one, so E accepts P only when
  ``required(E) <= P <= params(E)``; the vault signs P only when
  ``required(A) <= P <= allowed(A)`` (policy entries). So E is reachable from A exactly
  when ``required(E) | required(A) <= allowed(A) & params(E)`` (and A's one-of groups can
  be met inside that);
- Bybit documents no such refusal, so E is taken to accept any P carrying its mandatory
  parameters (with an allowed category).

The scan runs this over every signed endpoint of Binance's OpenAPI and the vendored Bybit
pages. Where an entry's signature would fit another endpoint, the vault sends that request
itself (``sent_by_vault``: the signature never leaves it); the tests prove that no
signature the vault hands out fits any other documented endpoint, for any key, and fail if
a new reachable pair appears.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from marketbot.contracts import Exchange
from marketbot.exchanges.binance import constants as c
from marketbot.exchanges.bybit import constants as bybit_constants
from marketbot.exchanges.bybit import signing as bybit_signing
from marketbot.exchanges.policy import EndpointRule
from marketbot.exchanges.signer import SigningInput
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


@functools.cache
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


def binance_replays(
    sources: frozenset[tuple[str, str]] | None = None,
) -> list[tuple[tuple[str, str], Documented]]:
    """(entry, documented endpoint) pairs a signature of the entry could authenticate.

    ``sources``: the entries to scan; by default those whose signatures the vault hands
    out (the vault-sent ones never leave it: ``EndpointRule.sent_by_vault``)."""
    policy = signing_policy(Exchange.BINANCE)
    documented = binance_signed_endpoints()
    if sources is None:
        sources = policy.handed_out
    found = []
    for key in sorted(sources - WS_API):  # WS API: see the test on apiKey
        entry = policy.rule_for(*key)
        assert entry is not None
        for target_key, target in documented.items():
            if target_key == key:
                continue
            if reachable(entry, target):
                found.append((key, target))
    return found


WS_API = frozenset({(c.WS_API_METHOD, c.USER_DATA_SUBSCRIBE_SIGNATURE)})


def test_the_openapi_is_scanned_whole() -> None:
    documented = binance_signed_endpoints()
    assert len(documented) > 250  # every signed endpoint of the spec, not a sample
    allowed = signing_policy(Exchange.BINANCE).endpoints - WS_API
    assert allowed <= set(documented) | {("GET", "/api/v3/account")}


def test_binance_refuses_parameters_an_endpoint_does_not_read() -> None:
    """The premise of binding on Binance (errors.md); real clients hit it with one unknown
    or misspelt parameter: ccxt/ccxt#3784 ("It happens when uses unknown fields in
    params"), binance/binance-connector-python#172 (``timeInforce`` on a new order)."""
    errors = (REFERENCE / "binance-spot" / "errors.md").read_text()
    assert "### -1104 UNREAD_PARAMETERS" in errors
    assert "Not all sent parameters were read" in errors


def test_a_ws_api_signature_cannot_be_replayed_on_rest() -> None:
    """The WS API payload the vault signs always carries the vault's own ``apiKey`` (the
    caller may not send it), and no signed REST endpoint reads ``apiKey``: Binance refuses a
    REST request with an unread parameter (errors.md -1104), so the signature fits none."""
    readers = [k for k, e in binance_signed_endpoints().items() if "apiKey" in e.params]
    assert readers == []
    assert "apiKey" not in signing_policy(Exchange.BINANCE).rule_for(*next(iter(WS_API))).params


def test_no_binance_signature_the_vault_hands_out_authenticates_another_endpoint() -> None:
    """Zero: for every signature that leaves the vault (account read, OCO list, WS API
    subscription), no other signed endpoint of the OpenAPI accepts its parameter set,
    whatever permissions the key has. The test fails if a new reachable pair appears."""
    handed_out = signing_policy(Exchange.BINANCE).handed_out
    assert handed_out == {
        ("GET", "/api/v3/account"),
        ("POST", "/api/v3/orderList/oco"),
        (c.WS_API_METHOD, c.USER_DATA_SUBSCRIBE_SIGNATURE),
    }
    assert [(s, t.method, t.path) for s, t in binance_replays()] == []


def test_the_vault_sends_exactly_the_entries_binding_cannot_protect() -> None:
    """Each vault-sent entry has a documented twin its signature would fit (so handing it
    out would not be safe), and each handed-out entry has none: the choice is per case."""
    policy = signing_policy(Exchange.BINANCE)
    sent = policy.endpoints - policy.handed_out
    assert sent == c.VAULT_SENT
    reached: dict[tuple[str, str], set[tuple[str, str]]] = {s: set() for s in sent}
    for source, target in binance_replays(frozenset(sent)):
        reached[source].add((target.method, target.path))
    assert all(reached.values()), {k: v for k, v in reached.items() if not v}
    # the pairs the issue named, and why they are not the key's permissions' to refuse
    assert ("POST", "/api/v3/order/test") in reached[("POST", "/api/v3/order")]
    assert ("POST", "/api/v3/sor/order") in reached[("POST", "/api/v3/order")]
    assert ("DELETE", "/sapi/v1/margin/order") in reached[("GET", "/api/v3/order")]
    assert ("GET", "/api/v3/myAllocations") in reached[("GET", "/api/v3/allOrders")]


def test_order_test_accepts_every_order_parameter() -> None:
    """Why no parameter can bind POST /api/v3/order: its test twin accepts them all
    (rest-api.md "Test new order"), whatever the OpenAPI lists."""
    rest = (REFERENCE / "binance-spot" / "rest-api.md").read_text()
    section = rest[rest.index("POST /api/v3/order/test") :][:1500]
    assert "In addition to all parameters accepted by [`POST /api/v3/order`]" in section


def test_margin_orders_need_no_permission_an_accepted_key_lacks() -> None:
    """Why the Margin twins are not excluded by key verification: Binance reports one
    trading permission for spot and margin (apiRestrictions ``enableSpotAndMarginTrading``);
    ``enableMargin`` (which the vault refuses) is the cross-margin transfer / loan switch
    ("This option can be adjusted after the Cross Margin account transfer is completed"),
    and the Margin order endpoints document no permission of their own."""
    spec = yaml.safe_load(OPENAPI.read_text())
    restrictions = spec["paths"]["/sapi/v1/account/apiRestrictions"]["get"]
    schema = restrictions["responses"]["200"]["content"]["application/json"]["schema"]
    fields = schema["properties"]
    assert "enableSpotAndMarginTrading" in fields
    assert "Cross Margin account transfer" in fields["enableMargin"]["description"]
    margin_order = spec["paths"]["/sapi/v1/margin/order"]
    assert all("permission" not in op.get("description", "") for op in margin_order.values())


def policy_rule(key: tuple[str, str]) -> EndpointRule:
    """An entry of the Binance policy, vault-only (internal) entries included."""
    entry = signing_policy(Exchange.BINANCE).rule_for(*key)
    assert entry is not None
    return entry


def test_the_known_replays_of_the_issue_are_closed() -> None:
    reached = {(s, (t.method, t.path)) for s, t in binance_replays()}
    assert reached == set()
    policy = signing_policy(Exchange.BINANCE)
    # the vault's own permission check is never handed out, nor sent for others
    assert ("GET", "/sapi/v1/account/apiRestrictions") not in policy.endpoints
    # DELETE /api/v3/openOrders (cancel every order on a symbol) fits nothing handed out
    every = binance_replays(policy.endpoints)
    assert not any((t.method, t.path) == ("DELETE", "/api/v3/openOrders") for _, t in every)
    # The fast-withdraw switch takes a timestamp only, so it fits no handed-out signature;
    # of the vault-sent entries only GET /api/v3/openOrderList (a timestamp only too: the
    # parameter set of the vault's own key check, apiRestrictions) would fit it. The vault
    # sends that request itself, as it sends its key check: the signature never leaves it.
    switch = ("POST", "/sapi/v1/account/enableFastWithdrawSwitch")
    assert not any((t.method, t.path) == switch for _, t in binance_replays())
    sources = {s for s, t in every if (t.method, t.path) == switch}
    assert sources == {("GET", c.OPEN_ORDER_LIST)}
    assert all(policy.sent_by_vault(*source) for source in sources)
    own_check = policy_rule(("GET", "/sapi/v1/account/apiRestrictions"))
    assert policy.rule_for("GET", c.OPEN_ORDER_LIST).params == own_check.params


def test_binding_is_what_closes_them() -> None:
    """Without the required parameters (names only, as before) the scan finds far more.
    Over the entries that have something to bind: an entry whose only parameter is the
    timestamp (GET /api/v3/openOrderList) has none, and is sent by the vault for that."""
    policy = signing_policy(Exchange.BINANCE)
    documented = binance_signed_endpoints()
    unbindable = {
        key
        for key in policy.endpoints - WS_API  # WS API: bound by apiKey (test above)
        if policy_rule(key).required <= {"timestamp"} and not policy_rule(key).one_of
    }
    assert unbindable == {("GET", c.OPEN_ORDER_LIST)}
    assert all(policy.sent_by_vault(*key) for key in unbindable)
    bindable = policy.endpoints - unbindable
    loose = 0
    for key in bindable:
        entry = policy.rule_for(*key)
        assert entry is not None
        names_only = EndpointRule(params=entry.params)
        loose += sum(
            1
            for k, t in documented.items()
            if k not in policy.endpoints and reachable(names_only, t)
        )
    assert loose > 100 > len(binance_replays(bindable))


# --------------------------------------------------------------------------- Bybit pages

_ENDPOINT = re.compile(r'<APIEndpoint method="(GET|POST)" url="([^"]+)"')
_ROW = re.compile(
    r"^\|\s*\[?([A-Za-z]+)\]?(?:\([^)]*\))?\s*\|\s*(\*\*true\*\*|<b>true</b>|true|false)", re.M
)


@functools.cache
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


def bybit_replays(
    sources: frozenset[tuple[str, str]],
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Bybit does not document refusing a parameter an endpoint does not read (guide.mdx,
    error.mdx have no counterpart of Binance's -1104), so a target is taken to accept any
    signed payload carrying its *mandatory* parameters with allowed values: the most a
    signature could authenticate. GET signs the query and POST the JSON body (guide.mdx),
    so a signature fits only targets of its own method."""
    documented = bybit_documented()
    policy = signing_policy(Exchange.BYBIT)
    reached = []
    for key in sorted(sources):
        entry = policy.rule_for(*key)
        assert entry is not None
        for target_key, (_names, required, categories) in documented.items():
            if target_key == key or target_key[0] != key[0]:
                continue
            if target_key == ("POST", "/v5/account/demo-apply-money"):
                continue  # demo trading only (demo.mdx: api-demo.bybit.com), adds demo funds
            if not required <= entry.params:
                continue
            signed = entry.values.get("category")
            if "category" in required and signed is not None and not signed & categories:
                continue
            reached.append((key, target_key))
    return reached


def test_bybit_signs_neither_the_path_nor_the_method() -> None:
    guide = (BYBIT_PAGES / "guide.mdx").read_text()
    assert "timestamp+api_key+recv_window+queryString" in guide
    assert "timestamp+api_key+recv_window+jsonBodyString" in guide


def test_no_bybit_signature_the_vault_hands_out_authenticates_a_rest_endpoint() -> None:
    """Zero: the only Bybit signature that leaves the vault is the private-WebSocket auth,
    whose pre-sign string is ``GET/realtime{expires}`` (websocket_wss-authentication.mdx);
    every REST pre-sign string starts with the timestamp, digits (guide.mdx), so none can
    equal it. Every REST entry is sent by the vault itself."""
    policy = signing_policy(Exchange.BYBIT)
    assert policy.handed_out == {("GET", bybit_constants.WS_AUTH)}
    auth = bybit_signing.ws_auth_request(1_700_000_000_000)
    assert bybit_signing.pre_sign_string("KEY", auth).startswith("GET/realtime")
    for method, path in policy.endpoints - policy.handed_out:
        rest = SigningInput(Exchange.BYBIT, method, path, "a=1", "{}", 1_700_000_000_000, 5000)
        assert bybit_signing.pre_sign_string("KEY", rest)[0].isdigit()
    assert bybit_replays(policy.handed_out - {("GET", bybit_constants.WS_AUTH)}) == []


def test_bybit_rest_signatures_would_fit_other_endpoints_so_the_vault_sends_them() -> None:
    """Why Bybit REST is vault-sent: by mandatory parameters alone an order-create body
    (category=spot) also fits /v5/order/amend and /v5/order/cancel-all ("category=spot,
    you can cancel all spot open orders ... without passing other params"), a
    wallet-balance query (accountType) fits /v5/asset/transfer/query-account-coins-balance,
    and a parameterless account read fits every parameterless GET, /v5/user/query-api
    (the key's own permissions) included."""
    documented = bybit_documented()
    assert ("GET", "/v5/position/list") in documented
    assert documented[("GET", "/v5/position/list")][2] == {"linear", "inverse", "option"}
    policy = signing_policy(Exchange.BYBIT)
    sent = policy.endpoints - policy.handed_out
    assert sent == bybit_constants.VAULT_SENT
    reached = set(bybit_replays(frozenset(sent)))
    assert (("POST", "/v5/order/create"), ("POST", "/v5/order/cancel-all")) in reached
    assert (("POST", "/v5/order/create"), ("POST", "/v5/order/amend")) in reached
    assert (
        ("GET", "/v5/account/wallet-balance"),
        ("GET", "/v5/asset/transfer/query-account-coins-balance"),
    ) in reached
    assert (("GET", "/v5/account/info"), ("GET", "/v5/user/query-api")) in reached
    # category=spot only: no signature ever fits a derivatives endpoint
    assert not any(target == ("GET", "/v5/position/list") for _, target in reached)
