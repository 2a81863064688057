"""Whether a key's permissions, as the exchange reports them, are acceptable.

Least privilege: a key must read and trade spot, and nothing else. A key that can withdraw
is refused (marketbot never needs to move funds out), and so is a key with any other
permission the exchange reports (margin, futures, options, transfers, earn...: each one is
named); a key that cannot trade or read is refused; an expired key is refused. A key not
bound to an IP address is accepted with a warning or refused, by policy. Every reason says
what the user can do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from marketbot.contracts import KeyPermissions, RejectReason
from marketbot.exchanges.errors import ExchangeError, Rejected

EXPIRY_WARNING = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    require_ip_binding: bool = False
    egress_ips: tuple[str, ...] = ()
    """marketbot's egress IPs (executors and vault). Named in the messages so the user can bind
    the key to them; a key bound to a list the exchange reports must allow every one of them,
    or some replica's orders would be refused."""


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason_code: str = ""
    message: str = ""
    warnings: tuple[str, ...] = ()


def _bind_hint(policy: VerificationPolicy) -> str:
    if policy.egress_ips:
        return f"restrict it to marketbot's IP addresses ({', '.join(policy.egress_ips)})"
    return "restrict it to marketbot's IP addresses"


def judge(permissions: KeyPermissions, policy: VerificationPolicy, now: datetime) -> Verdict:
    warnings: list[str] = []
    if not permissions.ip_bound:
        warnings.append(
            "this key is not bound to an IP address: anyone who obtains it can use it from "
            f"anywhere; on the exchange, {_bind_hint(policy)}"
        )
    if permissions.expires_at is not None and permissions.expires_at - now < EXPIRY_WARNING:
        if permissions.expires_at <= now:
            return _refuse(
                "key_expired",
                "this key has expired on the exchange; create a new trade-only key and register it",
                warnings,
            )
        warnings.append(
            f"this key expires on {permissions.expires_at:%Y-%m-%d}; renew it on the exchange "
            "before then or trading stops"
        )
    if permissions.can_withdraw:
        return _refuse(
            "withdraw_enabled",
            "this key can withdraw funds; marketbot never needs that. On the exchange, remove "
            "the withdrawal permission from the key (or create a new trade-only key), then "
            "verify again",
            warnings,
        )
    if permissions.excess:
        return _refuse(
            "excess_permissions",
            "this key can do more than read and trade spot: "
            f"{', '.join(permissions.excess)}. marketbot never needs that; on the exchange, "
            "remove each of these permissions from the key (or create a new key with only "
            "reading and spot trading), then verify again",
            warnings,
        )
    if not permissions.can_trade:
        return _refuse(
            "trade_disabled",
            "this key cannot place spot orders; on the exchange, enable spot trading for the "
            "key, then verify again",
            warnings,
        )
    if not permissions.can_read:
        return _refuse(
            "read_disabled",
            "this key cannot read the account; on the exchange, enable reading for the key, "
            "then verify again",
            warnings,
        )
    missing = _missing_egress(permissions, policy)
    if missing:
        return _refuse(
            "ip_mismatch",
            "this key is bound to IP addresses that do not include marketbot's "
            f"{', '.join(missing)}; on the exchange, add them to the key, then verify again",
            warnings,
        )
    if not permissions.ip_bound and policy.require_ip_binding:
        return _refuse(
            "ip_unbound",
            f"this key is not bound to an IP address and this platform requires it; "
            f"{_bind_hint(policy)}, then verify again",
            warnings,
        )
    return Verdict(accepted=True, warnings=tuple(warnings))


def _missing_egress(permissions: KeyPermissions, policy: VerificationPolicy) -> list[str]:
    """Egress IPs a bound key does not allow. Only judged when the exchange reports the
    key's IP list (Bybit does; Binance reports only that a restriction exists)."""
    if not permissions.ip_bound or not permissions.ips or not policy.egress_ips:
        return []
    allowed = set(permissions.ips)
    return [ip for ip in policy.egress_ips if ip not in allowed]


def _refuse(code: str, message: str, warnings: list[str]) -> Verdict:
    return Verdict(accepted=False, reason_code=code, message=message, warnings=tuple(warnings))


KEY_BROKEN_REASONS = frozenset({RejectReason.INVALID_KEY, RejectReason.PERMISSION})


def key_is_broken(error: ExchangeError) -> bool:
    """The exchange refused the key itself (unknown, deleted, wrong IP, no permission).

    Anything else (timeouts, 5xx, rate limits, circuit open) says nothing about the key.
    """
    return isinstance(error, Rejected) and error.reason in KEY_BROKEN_REASONS


def broken_key_verdict(error: ExchangeError) -> Verdict:
    reason = error.reason if isinstance(error, Rejected) else None
    if reason is RejectReason.PERMISSION:
        return Verdict(
            accepted=False,
            reason_code="key_not_permitted",
            message=(
                "the exchange refused this key from marketbot (IP restriction or missing "
                "permission); check the key's IP list and permissions, then verify again"
            ),
        )
    return Verdict(
        accepted=False,
        reason_code="key_invalid",
        message=(
            "the exchange does not accept this key or secret (deleted, mistyped or expired); "
            "check them, or create a new trade-only key and register it"
        ),
    )
