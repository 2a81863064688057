"""Bybit V5 (spot trading, linear positions)."""
