"""Who is calling: the client address behind trusted proxies, and the allow-list check."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

TRADINGVIEW_IPS: tuple[str, ...] = (
    "52.89.214.238",
    "34.212.75.30",
    "54.218.53.128",
    "52.32.178.7",
)
"""The addresses TradingView sends webhooks from (its documentation)."""


def parse_networks(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str | None) -> IpAddress | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IpAddress, networks: tuple[IpNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True)
class IpPolicy:
    """``enabled`` turns the allow-list on; ``trusted_proxies`` may set X-Forwarded-For."""

    enabled: bool
    allowed: tuple[IpNetwork, ...]
    trusted_proxies: tuple[IpNetwork, ...] = ()

    @classmethod
    def build(cls, enabled: bool, allowed: Iterable[str], trusted: Iterable[str]) -> IpPolicy:
        return cls(enabled, parse_networks(allowed), parse_networks(trusted))

    def client_address(self, peer: str | None, forwarded_for: str | None) -> IpAddress | None:
        """The peer, unless the peer is a trusted proxy: then the right-most untrusted hop.

        X-Forwarded-For from anyone else is ignored, so a caller cannot forge its address.
        """
        address = _address(peer)
        if address is None or not forwarded_for or not _within(address, self.trusted_proxies):
            return address
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            hop_address = _address(hop)
            if hop_address is None:
                return None  # a garbled chain from our own proxy: trust nothing in it
            if not _within(hop_address, self.trusted_proxies):
                return hop_address
            address = hop_address
        return address

    def permits(self, address: IpAddress | None) -> bool:
        if not self.enabled:
            return True
        return address is not None and _within(address, self.allowed)
