"""The CLI prints one JSON line with the three URLs and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx


def test_cli_starts_prints_urls_and_stops(tmp_path):
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "marketbot.sim",
            "--seed",
            "3",
            "--no-limits",
            "--fee",
            "0.002",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        urls = json.loads(line)
        assert set(urls) == {"bybit", "binance", "market"}
        assert json.loads(ready.read_text()) == urls
        assert httpx.get(f"{urls['binance']}/api/v3/ping").json() == {}
        assert httpx.get(f"{urls['bybit']}/v5/market/time").json()["retCode"] == 0
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
