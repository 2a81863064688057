"""Chromium for the web app's tests: Debian's /usr/bin/chromium driven by Playwright.

Never ``playwright install``: the browser is the distribution's package (``.ci/run`` installs
it with apt when it is missing). Without it the browser tests are skipped locally and fail
under ``CI=true``. Each test gets fresh browser contexts (own cookies, nothing shared), and
the browser itself runs on a fresh temporary profile.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MARKETBOT_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("MARKETBOT_SCREENSHOTS", ROOT / ".data" / "screenshots"))


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and no browser: {message}")
    pytest.skip(message)


async def launched() -> AsyncIterator[object]:
    """Chromium, started once per session by the tests' fixture."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def shot(page: object, name: str) -> Path:
    """Save a full-page screenshot of a main page (the README shows two of them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
