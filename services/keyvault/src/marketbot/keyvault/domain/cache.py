"""A small, bounded, time-limited cache of decrypted credentials for the signing path.

Trade-off: signing at thousands per second cannot afford a database read and two AES-GCM
openings per request, so a credential that was found active, enabled and verified is kept
in process memory for ``ttl`` seconds (LRU, at most ``max_entries``). It never leaves the
process, is dropped at once on revoke / disable / re-verification in this process (and by
broadcast in the others), and the TTL bounds how long another replica can keep signing
with a key revoked elsewhere if the broadcast is lost.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

from marketbot.contracts import Exchange


@dataclass(frozen=True, slots=True)
class CachedCredential:
    credential_id: uuid.UUID
    api_key: str
    secret: str
    loaded_at: float

    def __repr__(self) -> str:
        return f"CachedCredential(credential_id={self.credential_id})"


class CredentialCache:
    __slots__ = ("_entries", "max_entries", "ttl")

    def __init__(self, *, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, Exchange], CachedCredential] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str, exchange: Exchange, now: float) -> CachedCredential | None:
        key = (user_id, exchange)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry.loaded_at >= self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, user_id: str, exchange: Exchange, entry: CachedCredential) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        key = (user_id, exchange)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, user_id: str, exchange: Exchange) -> None:
        self._entries.pop((user_id, exchange), None)

    def clear(self) -> None:
        self._entries.clear()
