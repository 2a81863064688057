"""The pure parts of the pages: verdicts, the settings rules, the chart, the CSV, sessions,
client IPs, and the colour contrast of the stylesheet."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from marketbot.web import views
from marketbot.web.session import LoginLimiter, Session, SessionCodec, client_ip

STATIC = Path(__file__).resolve().parents[1] / "src" / "marketbot" / "web" / "static"


def test_key_verdicts_in_plain_words() -> None:
    assert views.key_verdict(None).title == "No key connected"
    verified = views.key_verdict({"verified": True, "enabled": True, "active": True})
    assert verified.tone == "ok"
    assert "cannot withdraw" in verified.detail
    pending = views.key_verdict(
        {"verified": False, "status_message": "stored; being verified with the exchange"}
    )
    assert pending.tone == "pending"
    refused = views.key_verdict(
        {"verified": False, "enabled": True, "status_message": "this key can withdraw funds"}
    )
    assert (refused.tone, refused.title) == ("refused", "Refused")
    withdraw = views.refusal_verdict("withdraw_enabled", "remove the withdrawal permission")
    assert withdraw.title == "Refused: This key can withdraw funds: remove that permission"
    assert withdraw.detail == "remove the withdrawal permission"
    busy = views.refusal_verdict("verification_unavailable", "the exchange did not answer.")
    assert busy.tone == "pending"
    assert views.refusal_verdict("something_new", "why").title == "The key was not accepted"


def form(**overrides: str) -> dict[str, str]:
    return {
        "risk_level": "medium",
        "preferred_exchange": "bybit",
        "trading_mode": "PERSONAL",
        "allocation": "",
        "allocation_currency": "BRL",
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"risk_level": "extreme"}, "risk_level", "Risk level must be one of low, medium, high"),
        ({"preferred_exchange": "kraken"}, "preferred_exchange", "must be one of bybit, binance"),
        ({"trading_mode": "AUTO"}, "trading_mode", "must be one of PERSONAL, PAUSED"),
        ({"allocation": "abc"}, "allocation", "Allocation must be a number"),
        ({"allocation": "-1"}, "allocation", "Allocation must be greater than 0"),
        ({"allocation": "1.234"}, "allocation", "at most 2 decimal places"),
        ({"allocation": "1e12"}, "allocation", "at most 1000000000"),
        ({"allocation": "NaN"}, "allocation", "must be a number"),
        ({"allocation": "10", "allocation_currency": "EUR"}, "allocation_currency", "BRL or USDT"),
    ],
)
def test_settings_rules_name_the_field(overrides: dict[str, str], field: str, message: str) -> None:
    changes, errors = views.settings_changes(form(**overrides))
    assert list(errors) == [field]
    assert message in errors[field]
    assert field not in changes


def test_settings_changes_are_what_the_gateway_takes() -> None:
    changes, errors = views.settings_changes(form(allocation="2500,50", allocation_currency="USDT"))
    assert errors == {}
    assert changes == {
        "risk_level": "medium",
        "preferred_exchange": "bybit",
        "trading_mode": "PERSONAL",
        "allocation": "2500.50",
        "allocation_currency": "USDT",
    }


def op(pnl: str | None, at: str, status: str = "CLOSED") -> dict[str, object]:
    return {"status": status, "realized_pnl": pnl, "updated_at": at, "operation_id": at}


def test_equity_curve_adds_closed_operations_in_time_order() -> None:
    points = views.equity_points(
        [
            op("2", "2026-11-24T12:00:00+00:00"),
            op("-0.5", "2026-11-24T11:00:00+00:00"),
            op(None, "2026-11-24T13:00:00+00:00", "OPEN"),
        ]
    )
    assert [p.total for p in points] == [Decimal("-0.5"), Decimal("1.5")]
    assert points[0].at == datetime(2026, 11, 24, 11, tzinfo=UTC)
    svg = views.pnl_chart_svg(points)
    assert svg.startswith('<svg class="chart gain"')
    assert 'role="img"' in svg
    assert "Cumulative realized PnL over 2 closed operations: 1.5 USDT" in svg
    assert svg.count("<circle") == 2
    assert views.pnl_chart_svg([]) == ""


def test_csv_has_every_column_and_no_formulas() -> None:
    text = views.operations_csv(
        [{"operation_id": "a", "realized_pnl": "1.5", "reject_reason": "=HYPERLINK(1)"}]
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(views.CSV_COLUMNS)
    assert rows[0]["realized_pnl"] == "1.5"
    assert rows[0]["reject_reason"] == "'=HYPERLINK(1)"


def test_unrealized_total_counts_only_priced_positions() -> None:
    assert views.unrealized_total([{"unrealized_pnl": "1.5"}, {"unrealized_pnl": "-0.5"}]) == 1
    assert views.unrealized_total([{"unrealized_pnl": None}]) is None


def test_numbers_read_like_numbers() -> None:
    assert views.num("1.50000") == "1.5"
    assert views.num("1E+2") == "100"
    assert views.num(None) == "\u2013"
    assert views.num("1.23456", 2) == "1.23"


def session(expires_at: float = 2_000_000_000.0) -> Session:
    return Session("user", "mbs_secret", "ana", "Ana", "csrf-token", expires_at)


def test_session_cookie_is_sealed_and_expires() -> None:
    codec = SessionCodec(b"k" * 32)
    sealed = codec.seal(session())
    assert "mbs_secret" not in sealed
    assert codec.open(sealed, 1_000_000_000.0) == session()
    assert codec.open(sealed, 2_000_000_001.0) is None  # expired
    assert codec.open(sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1], 0) is None
    assert SessionCodec(b"j" * 32).open(sealed, 0) is None  # another key
    assert codec.open("not a cookie", 0) is None
    assert codec.open(None, 0) is None
    assert session().csrf_ok("csrf-token")
    assert not session().csrf_ok("other")
    assert not session().csrf_ok(None)


def test_login_limiter_per_key() -> None:
    limiter = LoginLimiter(per_second=1 / 60, burst=2)
    assert limiter.take("1.2.3.4", 0) == 0
    assert limiter.take("1.2.3.4", 0) == 0
    assert limiter.take("1.2.3.4", 0) == pytest.approx(60)
    assert limiter.take("5.6.7.8", 0) == 0
    assert limiter.take("1.2.3.4", 61) == 0


def test_client_ip_believes_only_trusted_proxies() -> None:
    assert client_ip("9.9.9.9", "1.1.1.1", ("10.0.0.0/8",)) == "9.9.9.9"
    assert client_ip("10.0.0.5", "1.1.1.1, 10.0.0.7", ("10.0.0.0/8",)) == "1.1.1.1"
    assert client_ip("10.0.0.5", None, ("10.0.0.0/8",)) == "10.0.0.5"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_text_colours_meet_wcag_aa_contrast() -> None:
    css = (STATIC / "app.css").read_text()
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    for text in ("ink", "muted", "accent", "ok", "bad", "warn"):
        for background in ("bg", "panel"):
            ratio = contrast(colours[text], colours[background])
            assert ratio >= 4.5, f"{text} on {background}: {ratio:.2f}"
    assert contrast(colours["accent-ink"], colours["accent"]) >= 4.5
    assert contrast("#ffffff", "#10233f") >= 4.5  # the header


def test_htmx_is_vendored() -> None:
    text = (STATIC / "htmx.min.js").read_text()
    assert text.startswith("var htmx=function()")
