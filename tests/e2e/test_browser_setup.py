"""The browser tests skip without Chromium on a developer's machine and fail under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import browser


def test_missing_browser_skips_locally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        browser.require_chromium()


def test_missing_browser_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no browser"):
        browser.require_chromium()


def test_present_browser_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser, "CHROMIUM", fake)
    monkeypatch.setenv("CI", "true")
    browser.require_chromium()  # no skip, no failure
    assert "--no-sandbox" in browser.ARGS
    assert "--disable-quic" in browser.ARGS
