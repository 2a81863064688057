"""Masking, key formats per field, the verification policy, the signing cache and allow-list."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from marketbot.contracts import Exchange, KeyPermissions, RejectReason
from marketbot.exchanges.errors import Rejected, Retryable, SigningRefusedError
from marketbot.exchanges.signer import SigningInput
from marketbot.exchanges.signing import signing_policy
from marketbot.keyvault.domain.cache import CachedCredential, CredentialCache
from marketbot.keyvault.domain.formats import check_api_key, check_secret
from marketbot.keyvault.domain.masking import mask_key
from marketbot.keyvault.domain.verification import (
    VerificationPolicy,
    broken_key_verdict,
    judge,
    key_is_broken,
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)
BYBIT_KEY = "AbCdEfGhIjKlMnOpQr"
BYBIT_SECRET = "A" * 18 + "b" * 18
BINANCE_KEY = "k" * 64
BINANCE_SECRET = "s" * 64


def test_mask_key_shows_first_and_last_three() -> None:
    assert mask_key(BYBIT_KEY) == "AbC***pQr"
    assert mask_key("short") == "***"


@pytest.mark.parametrize(
    ("exchange", "key", "secret"),
    [(Exchange.BYBIT, BYBIT_KEY, BYBIT_SECRET), (Exchange.BINANCE, BINANCE_KEY, BINANCE_SECRET)],
)
def test_valid_formats(exchange: Exchange, key: str, secret: str) -> None:
    assert check_api_key(exchange, key) is None
    assert check_secret(exchange, secret) is None


@pytest.mark.parametrize(
    ("exchange", "value", "code"),
    [
        (Exchange.BYBIT, "", "missing"),
        (Exchange.BYBIT, BYBIT_KEY[:-1], "bad_format"),
        (Exchange.BYBIT, BYBIT_KEY + " ", "whitespace"),
        (Exchange.BYBIT, BYBIT_KEY[:-1] + "!", "bad_format"),
        (Exchange.BINANCE, BYBIT_KEY, "bad_format"),
    ],
)
def test_api_key_errors_name_the_field(exchange: Exchange, value: str, code: str) -> None:
    error = check_api_key(exchange, value)
    assert error is not None
    assert (error.field, error.code) == ("api_key", code)
    if value.strip():
        assert value.strip() not in error.message


@pytest.mark.parametrize(
    ("exchange", "value", "code"),
    [
        (Exchange.BYBIT, BYBIT_SECRET[:-2], "bad_format"),
        (
            Exchange.BINANCE,
            "-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----",
            "unsupported_key_type",
        ),
        (Exchange.BINANCE, "\n" + BINANCE_SECRET, "whitespace"),
    ],
)
def test_secret_errors_name_the_field_and_never_echo_it(
    exchange: Exchange, value: str, code: str
) -> None:
    error = check_secret(exchange, value)
    assert error is not None
    assert (error.field, error.code) == ("secret", code)
    assert value.strip()[:20] not in error.message


def perms(**changes: object) -> KeyPermissions:
    base: dict[str, object] = {
        "can_read": True,
        "can_trade": True,
        "can_withdraw": False,
        "ip_bound": True,
        "ips": ("10.0.0.1",),
    }
    base.update(changes)
    return KeyPermissions.model_validate(base)


def test_a_trade_only_ip_bound_key_is_accepted_without_warnings() -> None:
    verdict = judge(perms(), VerificationPolicy(), NOW)
    assert verdict.accepted
    assert verdict.warnings == ()


def test_withdraw_permission_is_rejected() -> None:
    verdict = judge(perms(can_withdraw=True), VerificationPolicy(), NOW)
    assert not verdict.accepted
    assert verdict.reason_code == "withdraw_enabled"
    assert "withdraw" in verdict.message


def test_no_trade_permission_is_rejected() -> None:
    verdict = judge(perms(can_trade=False), VerificationPolicy(), NOW)
    assert (verdict.accepted, verdict.reason_code) == (False, "trade_disabled")


def test_unbound_ip_is_a_warning_or_a_rejection_by_policy() -> None:
    unbound = perms(ip_bound=False, ips=())
    lenient = judge(unbound, VerificationPolicy(require_ip_binding=False), NOW)
    assert lenient.accepted
    assert any("IP" in w for w in lenient.warnings)
    strict = judge(
        unbound, VerificationPolicy(require_ip_binding=True, egress_ips=("1.2.3.4",)), NOW
    )
    assert not strict.accepted
    assert strict.reason_code == "ip_unbound"
    assert "1.2.3.4" in strict.message
    assert strict.warnings


def test_expiry() -> None:
    soon = judge(perms(expires_at=NOW + timedelta(days=3)), VerificationPolicy(), NOW)
    assert soon.accepted
    assert any("expires on 2026-05-04" in w for w in soon.warnings)
    gone = judge(perms(expires_at=NOW - timedelta(days=1)), VerificationPolicy(), NOW)
    assert (gone.accepted, gone.reason_code) == (False, "key_expired")


def test_which_exchange_errors_mean_the_key_is_broken() -> None:
    invalid = Rejected("bad key", reason=RejectReason.INVALID_KEY, code=10003)
    ip = Rejected("unmatched ip", reason=RejectReason.PERMISSION, code=10010)
    assert key_is_broken(invalid)
    assert key_is_broken(ip)
    assert not key_is_broken(Retryable("timeout"))
    assert not key_is_broken(Rejected("other", reason=RejectReason.EXCHANGE))
    assert broken_key_verdict(invalid).reason_code == "key_invalid"
    assert broken_key_verdict(ip).reason_code == "key_not_permitted"


def test_cache_ttl_bound_and_invalidation() -> None:
    cache = CredentialCache(ttl=10, max_entries=2)

    def entry(at: float) -> CachedCredential:
        return CachedCredential(uuid.uuid4(), "key", "secret", at)

    cache.put("u1", Exchange.BYBIT, entry(0))
    assert cache.get("u1", Exchange.BYBIT, 9.9) is not None
    assert cache.get("u1", Exchange.BYBIT, 10.0) is None
    cache.put("u1", Exchange.BYBIT, entry(0))
    cache.put("u2", Exchange.BYBIT, entry(0))
    cache.put("u3", Exchange.BYBIT, entry(0))
    assert len(cache) == 2
    assert cache.get("u1", Exchange.BYBIT, 1) is None
    cache.invalidate("u2", Exchange.BYBIT)
    assert cache.get("u2", Exchange.BYBIT, 1) is None
    assert "secret" not in repr(entry(0))


# --- the allow-list the vault applies (libs/exchanges policy) ---------------------------------

WITHDRAWALS = [
    (Exchange.BYBIT, "POST", "/v5/asset/withdraw/create", "", '{"coin":"USDT","amount":"1"}'),
    (Exchange.BYBIT, "POST", "/v5/asset/transfer/inter-transfer", "", "{}"),
    (Exchange.BINANCE, "POST", "/sapi/v1/capital/withdraw/apply", "coin=USDT&timestamp=1", ""),
    (Exchange.BINANCE, "POST", "/sapi/v1/asset/transfer", "timestamp=1", ""),
]
PATH_TRICKS = [
    (Exchange.BYBIT, "POST", "/v5/order/create%2F..%2F..%2Fasset%2Fwithdraw%2Fcreate", "", "{}"),
    (Exchange.BYBIT, "POST", "/v5/order/create/../../asset/withdraw/create", "", "{}"),
    (Exchange.BYBIT, "POST", "//v5/order/create", "", "{}"),
    (Exchange.BYBIT, "POST", "/v5//order/create", "", "{}"),
    (Exchange.BYBIT, "POST", "/v5/order/create/", "", "{}"),
    (Exchange.BYBIT, "POST", "/V5/ORDER/CREATE", "", "{}"),
    (Exchange.BYBIT, "GET", "/v5/order/realtime?x=/v5/asset/withdraw/create", "", ""),
    (Exchange.BYBIT, "POST", "/v5/order/create", "", '{"address":"evil","amount":"1"}'),
    (
        Exchange.BINANCE,
        "POST",
        "/api/v3/order%2F..%2F..%2Fsapi/v1/capital/withdraw/apply",
        "timestamp=1",
        "",
    ),
    (Exchange.BINANCE, "POST", "/api/v3/order?/sapi/v1/capital/withdraw/apply", "timestamp=1", ""),
    (Exchange.BINANCE, "POST", "/api/v3//order", "timestamp=1", ""),
    (Exchange.BINANCE, "POST", "/api/v3/order", "timestamp=1&address=evil&amount=1", ""),
    (Exchange.BINANCE, "POST", "/api/v3/order", "symbol=BTCUSDT&timestamp=1&symbol=ETHUSDT", ""),
    (Exchange.BINANCE, "POST", "/api/v3/order", "timestamp=1#/sapi/v1/capital/withdraw/apply", ""),
    (Exchange.BINANCE, "POST", "/api/v3/order", "timestamp=1%26address%3Devil", ""),
]


@pytest.mark.parametrize(("exchange", "method", "path", "query", "body"), WITHDRAWALS + PATH_TRICKS)
def test_the_policy_refuses_withdrawals_transfers_and_path_tricks(
    exchange: Exchange, method: str, path: str, query: str, body: str
) -> None:
    request = SigningInput(exchange, method, path, query, body, 1, 5000)
    with pytest.raises(SigningRefusedError):
        signing_policy(exchange).validate(request)


def test_a_key_bound_to_other_ips_than_marketbots_egress_is_refused() -> None:
    policy = VerificationPolicy(egress_ips=("203.0.113.7", "203.0.113.8"))
    partial = perms(ip_bound=True, ips=("203.0.113.7",))
    verdict = judge(partial, policy, NOW)
    assert not verdict.accepted
    assert verdict.reason_code == "ip_mismatch"
    assert "203.0.113.8" in verdict.message
    assert judge(perms(ip_bound=True, ips=("203.0.113.7", "203.0.113.8")), policy, NOW).accepted
    # Binance reports only that a restriction exists, not the list: nothing to compare.
    assert judge(perms(ip_bound=True, ips=()), policy, NOW).accepted
