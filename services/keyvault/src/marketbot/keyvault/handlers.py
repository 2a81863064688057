"""The vault's request handlers: plain async functions of (request, dependencies).

The secret exists in plaintext only inside ``register_key`` / ``verify`` (transiently, and
registered with the log redactor meanwhile) and in the signing cache; it never appears in a
reply, an event, an error, a metric or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from marketbot.contracts import (
    ApiKeyRejected,
    ApiKeyRevoked,
    ApiKeyStored,
    ApiKeyVerified,
    Envelope,
    ErrorDetail,
    Exchange,
    KeyPermissions,
    Side,
)
from marketbot.contracts.vault import (
    KeyStatusReply,
    KeyStatusRequest,
    RegisterKeyReply,
    RegisterKeyRequest,
    RevokeKeyRequest,
    SignBatchReply,
    SignBatchRequest,
    SignReply,
    SignRequest,
    VaultPublicKeyReply,
    VaultPublicKeyRequest,
    VerifyKeyRequest,
)
from marketbot.exchanges.errors import (
    ExchangeError,
    OutcomeUnknown,
    Retryable,
    SigningRefusedError,
)
from marketbot.exchanges.http import VenueHttp
from marketbot.exchanges.policy import OrderTerms
from marketbot.exchanges.signer import LocalSigner, Signature, SigningInput
from marketbot.exchanges.signing import order_terms, sign_request, signing_policy
from marketbot.keyvault.adapters.audit import AuditBuffer
from marketbot.keyvault.adapters.keysource import SealingKey
from marketbot.keyvault.adapters.orders import OrderStore
from marketbot.keyvault.adapters.repository import AuditEntry, Credential, PgStore
from marketbot.keyvault.adapters.venues import VenueProvider
from marketbot.keyvault.domain.bounds import (
    BoundRules,
    Refusal,
    RequestRecord,
    check_entry,
    check_sell,
    check_size,
)
from marketbot.keyvault.domain.cache import CachedCredential, CredentialCache
from marketbot.keyvault.domain.envelope import (
    MasterKeyRing,
    VaultCryptoError,
    decrypt_secret,
    encrypt_secret,
)
from marketbot.keyvault.domain.formats import check_api_key, check_secret
from marketbot.keyvault.domain.masking import mask_key
from marketbot.keyvault.domain.verification import (
    Verdict,
    VerificationPolicy,
    broken_key_verdict,
    judge,
    key_is_broken,
)
from marketbot.runtime.clock import Clock, epoch_ms
from marketbot.runtime.logs import get_logger, redactor
from marketbot.runtime.sealing import SealError, seal_context, unseal

log = get_logger("marketbot.keyvault")

Invalidate = Callable[[str, Exchange], Awaitable[None]]

UNAVAILABLE = "verification_unavailable"


@dataclass
class Vault:
    """Everything the handlers need, injected by the composition root (or a test)."""

    store: PgStore
    keyring: MasterKeyRing
    sealing: SealingKey
    venues: VenueProvider
    audit: AuditBuffer
    cache: CredentialCache
    clock: Clock
    policy: VerificationPolicy = field(default_factory=VerificationPolicy)
    monotonic: Callable[[], float] = time.monotonic
    broadcast_invalidation: Invalidate | None = None
    orders: OrderStore | None = None
    """Order requests and balances; without it (unit tests) orders are not bounded."""
    bounds: BoundRules = field(default_factory=BoundRules)
    balance_max_age: timedelta = timedelta(hours=6)
    request_wait_s: float = 1.0
    """How long a sign for a request not stored yet waits for the vault's consumer."""
    balances: dict[tuple[str, Exchange], tuple[Decimal, float]] = field(default_factory=dict)
    """Free quote balance per user and exchange, with the monotonic time it was known."""
    batch_slots: asyncio.Semaphore | None = None
    """Bounds the items of every batch being answered at once (``sign_batch``), as the
    single requests are bounded by the subscription's concurrency."""

    async def invalidate(self, user_id: str, exchange: Exchange) -> None:
        self.cache.invalidate(user_id, exchange)
        if self.broadcast_invalidation is not None:
            try:
                await self.broadcast_invalidation(user_id, exchange)
            except Exception as exc:  # the TTL still bounds staleness elsewhere
                log.warning("cache invalidation broadcast failed", error=str(exc))


_in_use: Counter[str] = Counter()


@contextmanager
def secret_in_use(secret: str) -> Iterator[None]:
    """Register the secret with the log redactor while this block runs."""
    _in_use[secret] += 1
    redactor.register(secret)
    try:
        yield
    finally:
        _in_use[secret] -= 1
        if _in_use[secret] <= 0:
            del _in_use[secret]
            redactor.forget(secret)


def _caused_by(request: Envelope, now: datetime) -> dict[str, Any]:
    return {"occurred_at": now, **request.caused()}


def _refusal(code: str, message: str, field_name: str | None = None) -> ErrorDetail:
    return ErrorDetail(code=code, message=message, field=field_name)


# --- public key -----------------------------------------------------------------------------


async def public_key(_request: VaultPublicKeyRequest, vault: Vault) -> VaultPublicKeyReply:
    return VaultPublicKeyReply(
        key_id=vault.sealing.key_id, public_key=base64.b64encode(vault.sealing.public).decode()
    )


# --- registration ---------------------------------------------------------------------------


async def register_key(request: RegisterKeyRequest, vault: Vault) -> RegisterKeyReply:
    """Validate, unseal, encrypt and store; emit ApiKeyStored; then verify with the exchange."""
    problem = check_api_key(request.exchange, request.api_key)
    if problem is not None:
        return RegisterKeyReply(ok=False, error=problem)
    sealed = request.sealed_secret
    if sealed.key_id != vault.sealing.key_id:
        return RegisterKeyReply(
            ok=False,
            error=_refusal(
                "unknown_vault_key",
                "the secret was sealed to a vault key that is not current; fetch the vault's "
                "public key again and re-seal",
                "sealed_secret",
            ),
        )
    context = seal_context(request.user_id, request.exchange.value, request.api_key)
    try:
        secret = unseal(vault.sealing.private, sealed, context)
    except (SealError, ValueError):
        return RegisterKeyReply(
            ok=False,
            error=_refusal(
                "unsealable",
                "the sealed secret does not open for this user, exchange and API key; seal it "
                "again with the vault's public key",
                "sealed_secret",
            ),
        )
    with secret_in_use(secret):
        problem = check_secret(request.exchange, secret)
        if problem is not None:
            return RegisterKeyReply(ok=False, error=problem)
        credential = await _store(request, secret, vault)
        await vault.invalidate(request.user_id, request.exchange)
        verdict = await _verify(credential, secret, vault, request)
    status = await _status_of(vault, credential.credential_id)
    if verdict.accepted:
        return RegisterKeyReply(key=status)
    return RegisterKeyReply(
        ok=False, error=_refusal(verdict.reason_code, verdict.message), key=status
    )


async def _store(request: RegisterKeyRequest, secret: str, vault: Vault) -> Credential:
    now = vault.clock.now()
    credential_id = uuid.uuid4()
    credential = Credential(
        credential_id=credential_id,
        user_id=request.user_id,
        exchange=request.exchange,
        api_key=request.api_key,
        masked_key=mask_key(request.api_key),
        encrypted=encrypt_secret(
            vault.keyring,
            Credential.binding_for(request.user_id, request.exchange, credential_id),
            secret,
        ),
        active=True,
        enabled=True,
        verified=False,
        status_message="stored; being verified with the exchange",
        created_at=now,
        updated_at=now,
    )
    envelope = _caused_by(request, now)
    async with vault.store.unit() as unit:
        previous = await unit.repo.active(request.user_id, request.exchange, lock=True)
        if previous is not None:
            reason = "replaced by a newly registered key"
            await unit.repo.deactivate(previous.credential_id, reason, now)
            await unit.repo.audit(_entry("revoke", "ok", now, previous, request, reason=reason))
            unit.emit(
                ApiKeyRevoked(
                    **envelope,
                    user_id=previous.user_id,
                    exchange=previous.exchange,
                    credential_id=previous.credential_id,
                    reason=reason,
                )
            )
        await unit.repo.insert(credential)
        await unit.repo.audit(
            _entry(
                "store",
                "ok",
                now,
                credential,
                request,
                masked_key=credential.masked_key,
                master_key_version=credential.encrypted.master_version,
            )
        )
        unit.emit(
            ApiKeyStored(
                **envelope,
                user_id=credential.user_id,
                exchange=credential.exchange,
                credential_id=credential_id,
                masked_key=credential.masked_key,
            )
        )
    log.info(
        "api key stored",
        user_id=credential.user_id,
        exchange=credential.exchange.value,
        credential_id=str(credential_id),
        masked_key=credential.masked_key,
    )
    return credential


def _entry(
    action: str,
    outcome: str,
    now: datetime,
    credential: Credential | None,
    request: Envelope | None,
    **detail: Any,
) -> AuditEntry:
    return AuditEntry(
        action=action,
        outcome=outcome,
        occurred_at=now,
        user_id=credential.user_id if credential else None,
        exchange=credential.exchange.value if credential else None,
        credential_id=credential.credential_id if credential else None,
        detail=detail,
        correlation_id=request.correlation_id if request else None,
    )


# --- verification ---------------------------------------------------------------------------


async def _verify(
    credential: Credential, secret: str, vault: Vault, cause: Envelope | None
) -> Verdict:
    """Ask the exchange what the key may do, judge it, record it and emit the outcome."""
    # The vault's own request: the permission endpoints are vault-only entries.
    signer = LocalSigner(credential.api_key, secret, internal=True)
    permissions: KeyPermissions | None = None
    refusal: ExchangeError | None = None
    try:
        permissions = await vault.venues.venue(credential.exchange).key_permissions(signer)
    except ExchangeError as exc:
        if not key_is_broken(exc):
            return await _verification_unavailable(credential, vault, cause, repr(exc))
        log.info(
            "exchange refused the key",
            credential_id=str(credential.credential_id),
            code=exc.code,
            error=exc.message,
        )
        refusal = exc
    except (httpx.HTTPError, OSError) as exc:
        return await _verification_unavailable(credential, vault, cause, repr(exc))
    now = vault.clock.now()
    broken = permissions is None
    if permissions is not None:
        verdict = judge(permissions, vault.policy, now)
    else:
        assert refusal is not None
        verdict = broken_key_verdict(refusal)

    envelope = (
        _caused_by(cause, now)
        if cause is not None
        else {"occurred_at": now, "correlation_id": f"reverify-{credential.credential_id}"}
    )
    ids = {
        "user_id": credential.user_id,
        "exchange": credential.exchange,
        "credential_id": credential.credential_id,
    }
    async with vault.store.unit() as unit:
        current = await unit.repo.by_id(credential.credential_id, lock=True)
        if current is None or not current.active:
            return Verdict(False, "key_revoked", "this key was revoked while it was being checked")
        detail: dict[str, Any] = {"reason_code": verdict.reason_code, "warnings": verdict.warnings}
        if permissions is not None:
            detail["permissions"] = permissions.model_dump(mode="json")
        if verdict.accepted:
            await unit.repo.record_verification(
                current.credential_id,
                verified=True,
                enabled=True,
                permissions=permissions,
                warnings=verdict.warnings,
                message="; ".join(verdict.warnings) or None,
                now=now,
            )
            assert permissions is not None
            unit.emit(
                ApiKeyVerified(
                    **envelope,
                    **ids,
                    permissions=permissions,
                    warnings=verdict.warnings,
                    verified_at=now,
                )
            )
            await unit.repo.audit(_entry("verify", "ok", now, current, cause, **detail))
        elif broken and current.verified:
            # A key that worked and stopped working: disable it.
            await unit.repo.record_verification(
                current.credential_id,
                verified=False,
                enabled=False,
                permissions=None,
                warnings=(),
                message=verdict.message,
                now=now,
            )
            unit.emit(ApiKeyRevoked(**envelope, **ids, reason=verdict.message))
            await unit.repo.audit(_entry("disable", "rejected", now, current, cause, **detail))
        else:
            # A verified key the exchange now reports with a refused permission (it gained
            # margin, transfer, withdraw...) is disabled, and ApiKeyRejected says why.
            gained = current.verified
            await unit.repo.record_verification(
                current.credential_id,
                verified=False,
                enabled=current.enabled and not gained,
                permissions=permissions,
                warnings=verdict.warnings,
                message=verdict.message,
                now=now,
            )
            unit.emit(
                ApiKeyRejected(
                    **envelope,
                    **ids,
                    reason_code=verdict.reason_code,
                    message=verdict.message,
                    permissions=permissions,
                )
            )
            action = "disable" if gained else "verify"
            await unit.repo.audit(_entry(action, "rejected", now, current, cause, **detail))
    await vault.invalidate(credential.user_id, credential.exchange)
    if verdict.accepted and vault.orders is not None:
        # The balance entries are bounded by, read now so that orders need no read of
        # their own (re-verification refreshes it every REVERIFY_INTERVAL_S).
        cached = CachedCredential(credential.credential_id, credential.api_key, secret, 0.0)
        try:
            await _read_balance(vault, credential.user_id, credential.exchange, cached)
        except Exception as exc:  # the key is verified either way; an order reads it then
            log.info("balance not read at verification", error=repr(exc))
    log.info(
        "api key verified" if verdict.accepted else "api key rejected",
        credential_id=str(credential.credential_id),
        reason_code=verdict.reason_code or None,
        warnings=list(verdict.warnings),
    )
    return verdict


async def _verification_unavailable(
    credential: Credential, vault: Vault, cause: Envelope | None, error: str
) -> Verdict:
    now = vault.clock.now()
    message = "the exchange could not be reached to check this key; it will be checked again"
    async with vault.store.unit() as unit:
        await unit.repo.record_check_unavailable(credential.credential_id, message, now)
        await unit.repo.audit(_entry("verify", "unavailable", now, credential, cause, error=error))
    log.warning(
        "key verification unavailable", credential_id=str(credential.credential_id), error=error
    )
    return Verdict(False, UNAVAILABLE, message)


async def verify_key(request: VerifyKeyRequest, vault: Vault) -> RegisterKeyReply:
    """Verify the user's active key for the exchange again, now."""
    async with vault.store.reader() as repo:
        credential = await repo.active(request.user_id, request.exchange)
    if credential is None:
        return RegisterKeyReply(ok=False, error=_no_key(request.exchange))
    verdict = await verify_credential(credential, vault, request)
    status = await _status_of(vault, credential.credential_id)
    if verdict.accepted:
        return RegisterKeyReply(key=status)
    return RegisterKeyReply(
        ok=False, error=_refusal(verdict.reason_code, verdict.message), key=status
    )


async def verify_credential(
    credential: Credential, vault: Vault, cause: Envelope | None
) -> Verdict:
    try:
        secret = decrypt_secret(vault.keyring, credential.binding, credential.encrypted)
    except VaultCryptoError as exc:
        log.error(
            "stored secret cannot be decrypted",
            credential_id=str(credential.credential_id),
            error=str(exc),
        )
        return Verdict(False, "key_unreadable", _UNREADABLE)
    with secret_in_use(secret):
        return await _verify(credential, secret, vault, cause)


_UNREADABLE = "this key can no longer be read by the vault; register it again"


async def reverify_due(
    vault: Vault, *, interval: timedelta, limit: int = 100, concurrency: int = 4
) -> int:
    """Re-verify active, enabled keys not checked within ``interval``; returns how many."""
    async with vault.store.reader() as repo:
        due = await repo.due_for_check(vault.clock.now() - interval, limit)
    gate = asyncio.Semaphore(concurrency)

    async def one(credential: Credential) -> None:
        async with gate:
            try:
                await verify_credential(credential, vault, None)
            except Exception:
                log.exception("re-verification failed", credential_id=str(credential.credential_id))

    await asyncio.gather(*(one(c) for c in due))
    return len(due)


# --- revoke and status ----------------------------------------------------------------------


def _no_key(exchange: Exchange) -> ErrorDetail:
    return _refusal("no_key", f"no API key is registered for {exchange.value}", "exchange")


async def revoke_key(request: RevokeKeyRequest, vault: Vault) -> RegisterKeyReply:
    now = vault.clock.now()
    async with vault.store.unit() as unit:
        credential = await unit.repo.active(request.user_id, request.exchange, lock=True)
        if credential is None:
            return RegisterKeyReply(ok=False, error=_no_key(request.exchange))
        await unit.repo.deactivate(credential.credential_id, request.reason, now)
        await unit.repo.audit(
            _entry("revoke", "ok", now, credential, request, reason=request.reason)
        )
        unit.emit(
            ApiKeyRevoked(
                **_caused_by(request, now),
                user_id=credential.user_id,
                exchange=credential.exchange,
                credential_id=credential.credential_id,
                reason=request.reason,
            )
        )
    await vault.invalidate(request.user_id, request.exchange)
    log.info("api key revoked", credential_id=str(credential.credential_id))
    return RegisterKeyReply(key=await _status_of(vault, credential.credential_id))


async def key_status(request: KeyStatusRequest, vault: Vault) -> KeyStatusReply:
    async with vault.store.reader() as repo:
        credentials = await repo.for_user(request.user_id, request.exchange)
    return KeyStatusReply(keys=tuple(c.status() for c in credentials))


async def _status_of(vault: Vault, credential_id: uuid.UUID) -> Any:
    async with vault.store.reader() as repo:
        credential = await repo.by_id(credential_id)
    return credential.status() if credential else None


# --- signing --------------------------------------------------------------------------------

SIGN_CLOCK_TOLERANCE_MS = 10_000
"""Clock difference allowed between a sign request's timestamp and the vault's clock, on top
of the request's recv window (executors stamp requests with the exchange's clock offset)."""


async def sign(request: SignRequest, vault: Vault) -> SignReply:
    """Sign one allowed request with the user's active, verified key."""
    signing_input = SigningInput(
        exchange=request.exchange,
        method=request.method,
        path=request.path,
        query=request.query,
        body=request.body,
        timestamp_ms=request.timestamp_ms,
        recv_window_ms=request.recv_window_ms,
    )
    try:
        signing_policy(request.exchange).validate(signing_input, sending=request.send)
    except SigningRefusedError as exc:
        await _audit_refusal(vault, request, "endpoint_refused", exc.message)
        log.warning(
            "signing refused",
            correlation_id=request.correlation_id,
            user_id=request.user_id,
            exchange=request.exchange.value,
            method=request.method,
            path=request.path[:120],
            reason=exc.message,
        )
        return SignReply(
            ok=False,
            error=_refusal("endpoint_refused", f"the vault does not sign this: {exc.message}"),
        )
    skew_ms = abs(request.timestamp_ms - epoch_ms(vault.clock.now()))
    if skew_ms > request.recv_window_ms + SIGN_CLOCK_TOLERANCE_MS:
        # A signature is only good inside its receive window: refusing far-off timestamps
        # means no one can collect signatures now to use after the key is revoked.
        await _audit_refusal(vault, request, "timestamp_out_of_range", f"{skew_ms} ms off")
        return SignReply(
            ok=False,
            error=_refusal(
                "timestamp_out_of_range",
                f"timestamp_ms is {skew_ms} ms from the vault's clock; at most recv_window_ms "
                f"+ {SIGN_CLOCK_TOLERANCE_MS} ms is signed",
            ),
        )
    if not vault.audit.accepting:
        return SignReply(
            ok=False,
            error=_refusal("audit_unavailable", "the vault cannot audit signatures right now"),
        )
    found = await _signing_credential(request, vault)
    if isinstance(found, ErrorDetail):
        await _audit_refusal(vault, request, found.code, found.message)
        return SignReply(ok=False, error=found)
    terms = order_terms(request.exchange, signing_input)
    if terms is not None:
        refused = await _bound_order(request, terms, found, vault)
        if refused is not None:
            error, rule_name = refused
            await _audit_refusal(
                vault, request, error.code, error.message, field_name=error.field, rule=rule_name
            )
            log.warning(
                "order signing refused",
                correlation_id=request.correlation_id,
                user_id=request.user_id,
                exchange=request.exchange.value,
                field=error.field,
                rule=rule_name,
                reason=error.message,
            )
            return SignReply(ok=False, error=error)
    signature = sign_request(request.exchange, found.secret, found.api_key, signing_input)
    now = vault.clock.now()
    detail: dict[str, Any] = {"method": request.method, "path": request.path}
    if request.send:
        detail["sent"] = True
    vault.audit.add_record(
        (
            now,
            "sign",
            "ok",
            request.user_id,
            request.exchange.value,
            found.credential_id,
            json.dumps(detail),
            request.correlation_id,
        ),
        found.credential_id,
        now,
    )
    if request.send:
        return await _send_signed(request, signing_input, found, signature, vault)
    return SignReply(api_key=found.api_key, signature=signature)


async def sign_batch(request: SignBatchRequest, vault: Vault) -> SignBatchReply:
    """Answer each item exactly as ``sign`` answers a request of its own (its endpoint
    rule, clock check, key, its own order request's bounds and its audit row), the items
    concurrently; one reply per item, in order. An item's refusal or failure is that
    item's answer only."""

    async def one(item: SignRequest) -> SignReply:
        if item.exchange is not request.exchange:
            # as a single request naming another exchange than its subject is refused
            return SignReply(
                ok=False,
                error=_refusal(
                    "invalid_request",
                    f"exchange: the item names {item.exchange.value}, the batch "
                    f"{request.exchange.value}",
                    "exchange",
                ),
            )
        try:
            if vault.batch_slots is None:
                return await sign(item, vault)
            async with vault.batch_slots:
                return await sign(item, vault)
        except Exception:
            log.exception("sign request failed", correlation_id=item.correlation_id)
            return SignReply(ok=False, error=_refusal("internal", "the service failed; try again"))

    return SignBatchReply(results=tuple(await asyncio.gather(*map(one, request.items))))


async def _send_signed(
    request: SignRequest,
    signing_input: SigningInput,
    credential: CachedCredential,
    signature: str,
    vault: Vault,
) -> SignReply:
    """Send the request the vault just signed and answer with the exchange's response: the
    signature of an endpoint no parameter binds never leaves the vault."""
    http = getattr(vault.venues.venue(request.exchange), "http", None)
    if not isinstance(http, VenueHttp):
        return SignReply(
            ok=False, error=_refusal("not_sent", "this vault cannot reach the exchange")
        )
    try:
        response = await http.send_signed(signing_input, Signature(credential.api_key, signature))
    except Retryable as exc:
        return SignReply(ok=False, error=_refusal("not_sent", exc.message))
    except OutcomeUnknown as exc:
        return SignReply(ok=False, error=_refusal("outcome_unknown", exc.message))
    return SignReply(
        api_key=credential.api_key,
        status=response.status_code,
        headers=tuple(response.headers.multi_items()),
        response=response.text,
    )


async def _signing_credential(request: SignRequest, vault: Vault) -> CachedCredential | ErrorDetail:
    now = vault.monotonic()
    cached = vault.cache.get(request.user_id, request.exchange, now)
    if cached is not None:
        return cached
    async with vault.store.reader() as repo:
        credential = await repo.active(request.user_id, request.exchange)
    if credential is None:
        return _no_key(request.exchange)
    if not credential.enabled:
        return _refusal(
            "key_disabled",
            credential.status_message or "this key is disabled; verify it again",
        )
    if not credential.verified:
        return _refusal(
            "key_not_verified",
            credential.status_message or "this key has not passed verification",
        )
    try:
        secret = decrypt_secret(vault.keyring, credential.binding, credential.encrypted)
    except VaultCryptoError as exc:
        log.error(
            "stored secret cannot be decrypted",
            credential_id=str(credential.credential_id),
            error=str(exc),
        )
        return _refusal("key_unreadable", _UNREADABLE)
    entry = CachedCredential(credential.credential_id, credential.api_key, secret, now)
    vault.cache.put(request.user_id, request.exchange, entry)
    return entry


async def _audit_refusal(
    vault: Vault,
    request: SignRequest,
    code: str,
    reason: str,
    *,
    field_name: str | None = None,
    rule: str | None = None,
) -> None:
    """Refusals are written before the answer, not buffered."""
    named = {"field": field_name, "rule": rule} if field_name or rule else {}
    entry = AuditEntry(
        action="sign_refused",
        outcome="refused",
        occurred_at=vault.clock.now(),
        user_id=request.user_id,
        exchange=request.exchange.value,
        detail={
            "code": code,
            "reason": reason[:200],
            "method": request.method,
            "path": request.path[:256],
            "query_chars": len(request.query),
            "body_chars": len(request.body),
            **named,
        },
        correlation_id=request.correlation_id,
    )
    async with vault.store.reader() as repo:
        await repo.audit(entry)


# --- orders bounded by their request --------------------------------------------------------


def _order_refusal(refusal: Refusal) -> tuple[ErrorDetail, str]:
    message = f"the vault does not sign this order: {refusal.message} (rule {refusal.rule})"
    return _refusal("order_refused", message, refusal.field), refusal.rule


async def _bound_order(
    request: SignRequest, terms: OrderTerms, credential: CachedCredential, vault: Vault
) -> tuple[ErrorDetail, str] | None:
    """``None`` when the order placement is within its request's terms (domain/bounds.py).

    Cost per order: a share of one indexed read for the request (with the stored balance)
    and of one update for the signature count, the signs of one tick together
    (``OrderStore``); the exchange is asked for the balance only when the order exceeds the
    cached one (or it is older than ``balance_max_age``)."""
    if vault.orders is None:
        return _order_refusal(
            Refusal("request_id", "known_request", "this vault keeps no order requests")
        )
    if terms.side is Side.SELL:
        entries = await vault.orders.entries(request.entries) if request.entries else []
        refusal = check_sell(
            terms, entries, request.entries, user_id=request.user_id, exchange=request.exchange
        )
        return _order_refusal(refusal) if refusal is not None else None
    if request.request_id is None:
        return _order_refusal(
            Refusal(
                "request_id", "names_request", "an entry names the order request it carries out"
            )
        )
    asset = vault.bounds.sizing.quote_asset
    record, stored = await _wait_for_request(request.request_id, asset, vault)
    if record is None:
        return (
            _refusal(
                "order_request_unknown",
                "the vault has no order request with this id (yet); nothing was signed",
                "request_id",
            ),
            "known_request",
        )
    refusal = check_entry(
        terms, record, user_id=request.user_id, exchange=request.exchange, rules=vault.bounds
    )
    if refusal is None:
        refusal = await _check_size(terms, record, stored, credential, vault)
    if refusal is not None:
        return _order_refusal(refusal)
    assert terms.quantity is not None
    if not await vault.orders.record_sign(
        record.request_id, terms.quantity, vault.clock.now(), vault.bounds.max_signs
    ):
        return _order_refusal(
            Refusal("request_id", "max_signs", "this order request was signed too many times")
        )
    return None


async def _wait_for_request(
    request_id: uuid.UUID, asset: str, vault: Vault
) -> tuple[RequestRecord | None, tuple[Decimal, datetime] | None]:
    """The executor and the vault read ORDER_REQUESTS side by side: give the vault's
    consumer a moment to store a request the executor already has."""
    assert vault.orders is not None
    deadline = vault.monotonic() + vault.request_wait_s
    while True:
        record, stored = await vault.orders.request(request_id, asset)
        if record is not None or vault.monotonic() >= deadline:
            return record, stored
        await asyncio.sleep(0.02)


async def _check_size(
    terms: OrderTerms,
    record: RequestRecord,
    stored: tuple[Decimal, datetime] | None,
    credential: CachedCredential,
    vault: Vault,
) -> Refusal | None:
    """Within the size the cached balance allows, or else the balance read now."""
    known: Decimal | None = None
    cached = vault.balances.get((record.user_id, record.exchange))
    max_age = vault.balance_max_age.total_seconds()
    if cached is not None and vault.monotonic() - cached[1] <= max_age:
        known = cached[0]
    elif stored is not None and vault.clock.now() - stored[1] <= vault.balance_max_age:
        known = stored[0]
        _remember_balance(vault, record.user_id, record.exchange, known)
    if known is not None and check_size(terms, record, known, vault.bounds) is None:
        return None
    try:
        fresh = await _read_balance(vault, record.user_id, record.exchange, credential)
    except (ExchangeError, httpx.HTTPError, OSError) as exc:
        return Refusal("quantity", "balance_readable", f"the balance could not be read: {exc}")
    return check_size(terms, record, fresh, vault.bounds)


def _remember_balance(vault: Vault, user_id: str, exchange: Exchange, free: Decimal) -> None:
    if len(vault.balances) >= _MAX_BALANCES:
        vault.balances.clear()
    vault.balances[(user_id, exchange)] = (free, vault.monotonic())


_MAX_BALANCES = 100_000


async def _read_balance(
    vault: Vault, user_id: str, exchange: Exchange, credential: CachedCredential
) -> Decimal:
    """The user's free quote balance, read with the user's own key (signed here: the
    signature never leaves the vault), then stored for the other replicas."""
    signer = LocalSigner(credential.api_key, credential.secret)
    with secret_in_use(credential.secret):
        balance = await vault.venues.venue(exchange).balance(
            signer, vault.bounds.sizing.quote_asset
        )
    assert vault.orders is not None
    await vault.orders.put_balance(
        user_id, exchange, vault.bounds.sizing.quote_asset, balance.free, vault.clock.now()
    )
    _remember_balance(vault, user_id, exchange, balance.free)
    return balance.free
