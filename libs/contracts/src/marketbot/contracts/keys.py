"""Users' exchange API keys as the vault reports them. A secret never appears here."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, Field

from marketbot.contracts.enums import Exchange
from marketbot.contracts.envelope import Event, Message


class KeyPermissions(Message):
    can_read: bool
    can_trade: bool
    can_withdraw: bool
    ip_bound: bool
    ips: tuple[str, ...] = ()
    expires_at: AwareDatetime | None = None
    excess: tuple[str, ...] = Field(default=(), exclude_if=lambda value: not value)
    """Permissions beyond reading and spot trading (margin, futures, options, transfers,
    earn...), in the exchange's own names (Binance ``enableMargin``, Bybit
    ``Wallet.AccountTransfer``). The vault refuses a key that has any. Left off the wire
    when empty, so every message older readers decoded still decodes the same."""


class KeyEvent(Event):
    user_id: str = Field(min_length=1, max_length=64)
    exchange: Exchange
    credential_id: uuid.UUID

    def subject(self) -> str:
        return f"keys.{self.TYPE}"


class ApiKeyStored(KeyEvent):
    TYPE = "ApiKeyStored"

    masked_key: str


class ApiKeyVerified(KeyEvent):
    TYPE = "ApiKeyVerified"

    permissions: KeyPermissions
    warnings: tuple[str, ...] = ()
    verified_at: AwareDatetime


class ApiKeyRejected(KeyEvent):
    TYPE = "ApiKeyRejected"

    reason_code: str
    message: str = Field(description="what the user can do about it")
    permissions: KeyPermissions | None = None


class ApiKeyRevoked(KeyEvent):
    TYPE = "ApiKeyRevoked"

    reason: str
