"""What the pages show, as pure functions: a key's verdict in plain words, the settings
form's rules, the PnL chart (inline SVG), the history as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape

from marketbot.contracts import Exchange, RiskLevel, TradingMode

# --- keys ----------------------------------------------------------------------------------

REFUSALS = {
    "withdraw_enabled": "This key can withdraw funds: remove that permission",
    "trade_disabled": "This key cannot trade: enable spot trading for it",
    "read_disabled": "This key cannot read the account: enable reading for it",
    "key_expired": "This key has expired on the exchange",
    "ip_mismatch": "This key is bound to other IP addresses",
    "ip_unbound": "This key must be bound to marketbot's IP addresses",
    "key_invalid": "The exchange does not accept this key or secret",
    "key_not_permitted": "The exchange refused this key from marketbot",
    "verification_unavailable": "Stored, but not checked yet",
}


@dataclass(frozen=True)
class Verdict:
    tone: str
    """ok, refused, pending, error: the colour and icon of the message."""
    title: str
    detail: str = ""


def key_verdict(key: dict[str, Any] | None) -> Verdict:
    """A stored key's state as a person reads it."""
    if key is None:
        return Verdict("pending", "No key connected")
    message = str(key.get("status_message") or "")
    if not key.get("active", True):
        return Verdict("refused", "Revoked", message)
    if key.get("verified"):
        detail = "marketbot can read the account and place spot orders; it cannot withdraw."
        return Verdict("ok", "Verified", f"{detail} {message}".strip())
    if not key.get("enabled", True):
        return Verdict("refused", "Disabled", message or "verify the key again")
    if message.startswith("stored; being verified"):
        return Verdict("pending", "Being checked with the exchange", message)
    return Verdict("refused", "Refused", message or "the key did not pass verification")


def refusal_verdict(code: str, message: str) -> Verdict:
    """The vault's (or the gateway's) refusal of a key that was just sent."""
    if code == "verification_unavailable":
        return Verdict("pending", REFUSALS[code], message + " Use “Check again” in a moment.")
    title = REFUSALS.get(code)
    if title is None:
        return Verdict("refused", "The key was not accepted", message)
    return Verdict("refused", f"Refused: {title}", message)


def permissions_text(key: dict[str, Any] | None) -> str:
    perms = (key or {}).get("permissions") or {}
    if not perms:
        return ""
    words = [
        ("read" if perms.get("can_read") else "no read"),
        ("trade" if perms.get("can_trade") else "no trade"),
        ("WITHDRAW" if perms.get("can_withdraw") else "no withdraw"),
        ("IP-bound" if perms.get("ip_bound") else "not IP-bound"),
    ]
    return ", ".join(words)


# --- settings form ---------------------------------------------------------------------------

ALLOCATION_MAX = Decimal("1000000000")


def settings_changes(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The preferences to send, and per field the rule it breaks (field -> message)."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def choice(field: str, allowed: list[str], label: str) -> None:
        value = form.get(field, "").strip()
        if value not in allowed:
            errors[field] = f"{label} must be one of {', '.join(allowed)}"
        else:
            changes[field] = value

    choice("risk_level", [r.value for r in RiskLevel], "Risk level")
    choice("preferred_exchange", [e.value for e in Exchange], "Preferred exchange")
    choice("trading_mode", [m.value for m in TradingMode], "Trading mode")
    allocation = form.get("allocation", "").strip().replace(",", ".")
    currency = form.get("allocation_currency", "").strip()
    if allocation:
        try:
            amount = Decimal(allocation)
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            errors["allocation"] = "Allocation must be a number, e.g. 2500 or 2500.50"
        elif amount <= 0:
            errors["allocation"] = "Allocation must be greater than 0"
        elif amount > ALLOCATION_MAX:
            errors["allocation"] = "Allocation must be at most 1000000000"
        elif -amount.as_tuple().exponent > 2:  # type: ignore[operator]
            errors["allocation"] = "Allocation must have at most 2 decimal places"
        else:
            changes["allocation"] = format(amount, "f")
        if currency not in ("BRL", "USDT"):
            errors["allocation_currency"] = "Allocation currency must be BRL or USDT"
        else:
            changes["allocation_currency"] = currency
    elif currency not in ("", "BRL", "USDT"):
        errors["allocation_currency"] = "Allocation currency must be BRL or USDT"
    return changes, errors


# --- numbers, PnL, CSV -------------------------------------------------------------------------


def num(value: Any, places: int | None = None) -> str:
    """A decimal string as a person reads it: no exponent, no trailing zeros."""
    if value is None or value == "":
        return "\u2013"  # an en dash: no value
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places))
        return format(amount, "f")
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def unrealized_total(positions: list[dict[str, Any]]) -> Decimal | None:
    """The sum of the priced positions' unrealized PnL; None when none is priced."""
    values = [Decimal(str(p["unrealized_pnl"])) for p in positions if p.get("unrealized_pnl")]
    return sum(values, Decimal("0")) if values else None


def open_pnl(op: dict[str, Any]) -> Decimal:
    return Decimal(str(op.get("realized_pnl") or "0"))


@dataclass(frozen=True)
class ChartPoint:
    at: datetime
    total: Decimal


def equity_points(operations: list[dict[str, Any]]) -> list[ChartPoint]:
    """Cumulative realized PnL after each closed operation, oldest first."""
    closed = [
        op
        for op in operations
        if op.get("status") == "CLOSED" and op.get("realized_pnl") is not None
    ]
    closed.sort(key=lambda op: str(op.get("updated_at")))
    total = Decimal("0")
    points: list[ChartPoint] = []
    for op in closed:
        total += Decimal(str(op["realized_pnl"]))
        points.append(ChartPoint(datetime.fromisoformat(str(op["updated_at"])), total))
    return points


def pnl_chart_svg(points: list[ChartPoint], width: int = 640, height: int = 220) -> str:
    """An accessible inline SVG line of cumulative realized PnL (a text summary inside)."""
    if not points:
        return ""
    pad_l, pad_r, pad_t, pad_b = 64, 16, 16, 28
    values = [Decimal("0"), *(p.total for p in points)]
    low, high = min(values), max(values)
    span = (high - low) or Decimal("1")
    n = len(points)

    def x(i: int) -> float:
        return pad_l + (width - pad_l - pad_r) * (i / max(n, 1))

    def y(v: Decimal) -> float:
        return pad_t + float((high - v) / span) * (height - pad_t - pad_b)

    coords = [(x(0), y(Decimal("0")))] + [(x(i + 1), y(p.total)) for i, p in enumerate(points)]
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{cx:.1f},{cy:.1f}" for i, (cx, cy) in enumerate(coords)
    )
    final = points[-1].total
    tone = "gain" if final >= 0 else "loss"
    summary = (
        f"Cumulative realized PnL over {n} closed operation{'s' if n != 1 else ''}: "
        f"{num(final)} USDT (lowest {num(low)}, highest {num(high)})."
    )
    zero = y(Decimal("0"))
    dots = "".join(
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3"><title>'
        f"{escape(p.at.strftime('%Y-%m-%d %H:%M'))}: {escape(num(p.total))} USDT</title></circle>"
        for (cx, cy), p in zip(coords[1:], points, strict=True)
    )
    label_x = pad_l - 6
    return (
        f'<svg class="chart {tone}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="chart-title">PnL</title><desc id="chart-desc">{escape(summary)}</desc>'
        f'<line class="axis" x1="{pad_l}" x2="{width - pad_r}" y1="{zero:.1f}" y2="{zero:.1f}"/>'
        f'<text x="{label_x}" y="{y(high) + 4:.1f}" text-anchor="end">{escape(num(high, 2))}</text>'
        f'<text x="{label_x}" y="{y(low) + 4:.1f}" text-anchor="end">{escape(num(low, 2))}</text>'
        f'<text x="{label_x}" y="{zero + 4:.1f}" text-anchor="end">0</text>'
        f'<path class="line" d="{path}" fill="none"/>{dots}</svg>'
        f'<p class="chart-summary">{escape(summary)}</p>'
    )


CSV_COLUMNS = (
    "requested_at",
    "updated_at",
    "operation_id",
    "signal_id",
    "exchange",
    "symbol",
    "side",
    "plan",
    "status",
    "requested_quantity",
    "filled_quantity",
    "average_price",
    "exit_price",
    "fees_quote",
    "realized_pnl",
    "commission",
    "reject_reason",
    "client_order_id",
    "exchange_order_id",
)


def operations_csv(operations: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for op in operations:
        row = []
        for column in CSV_COLUMNS:
            value = op.get(column)
            text = "" if value is None else str(value)
            if text[:1] in ("=", "+", "-", "@") and column in ("reject_reason",):
                text = "'" + text  # never a formula in a spreadsheet
            row.append(text)
        writer.writerow(row)
    return out.getvalue()
