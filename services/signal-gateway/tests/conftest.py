"""Fixtures live in helpers.py (importable by the tests); this makes pytest see them."""

from .helpers import api, clock, gateway_pool, ledger, make_app, vault

__all__ = ["api", "clock", "gateway_pool", "ledger", "make_app", "vault"]
