"""Binance Spot."""
