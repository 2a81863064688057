"""TradingView alerts in both forms TradingView sends, read into one validated ``Alert``.

TradingView posts ``Content-Type: application/json`` when the alert message is valid JSON and
``text/plain`` otherwise. The JSON template is documented in the README; the text form is
``ACTION SYMBOL [@ PRICE] [key=value ...]``, e.g. ``BUY BTCUSDT @ 95000 sl=2 tp=4``.

Reading is in two steps so that authentication can happen in between: ``read_body`` turns
bytes into raw fields (only syntax errors, 400), the caller authenticates with the
passphrase it found, then ``validate_alert`` checks every field (422).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from marketbot.contracts import Exchange, SignalAction, derived_id
from marketbot.contracts.envelope import unstorable
from marketbot.gateway.domain.errors import (
    InvalidFieldError,
    MalformedError,
    UnsupportedMediaError,
)

SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
MAX_STRATEGY = 128

# Canonical field name -> the names accepted for it in the JSON template.
ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker"),
    "action": ("action", "side"),
    "price": ("price", "close"),
    "time": ("time", "timenow"),
    "strategy": ("strategy",),
    "sl": ("sl", "stop_loss_percent"),
    "tp": ("tp", "take_profit_percent"),
    "exchange": ("exchange",),
    "passphrase": ("passphrase", "token"),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_ACTIONS = {"buy": SignalAction.BUY, "sell": SignalAction.SELL, "close": SignalAction.CLOSE}
_ACTION_ALIASES = {"long": "buy", "short": "sell", "exit": "close", "flat": "close"}


@dataclass(frozen=True)
class RawAlert:
    """The fields of an alert as sent, by canonical name; nothing validated yet."""

    fields: dict[str, Any]
    form: str  # "json" | "text"

    @property
    def passphrase(self) -> str | None:
        value = self.fields.get("passphrase")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Alert:
    symbol: str
    action: SignalAction
    price: Decimal | None
    alert_time: datetime | None
    strategy: str | None
    stop_loss_percent: Decimal | None
    take_profit_percent: Decimal | None
    exchange: Exchange | None


# --- reading ----------------------------------------------------------------------------


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """``"text/plain; charset=utf-8"`` -> ``("text/plain", "utf-8")``."""
    if not content_type:
        return "", None
    main, *params = (part.strip() for part in content_type.split(";"))
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return main.lower(), charset


def read_body(body: bytes, content_type: str | None) -> RawAlert:
    """Bytes to raw fields. JSON when declared JSON or when the text looks like an object."""
    kind, charset = media_type(content_type)
    if kind not in ("", "application/json", "text/plain"):
        raise UnsupportedMediaError(
            "unsupported_media_type",
            f"content type {kind!r} is not accepted; send application/json or text/plain",
            "content-type",
        )
    if charset not in (None, "utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedMediaError(
            "unsupported_charset", f"charset {charset!r} is not accepted; use utf-8", "content-type"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("not_utf8", "the body is not valid UTF-8", "body") from exc
    stripped = text.strip()
    if not stripped:
        raise MalformedError("empty", "the body is empty; send the alert message", "body")
    if kind == "application/json" or stripped.startswith("{"):
        return RawAlert(_json_fields(stripped), "json")
    return RawAlert(_text_fields(stripped), "text")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _json_fields(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise MalformedError(
            "invalid_json", f"the body is not valid JSON: {detail}", "body"
        ) from exc
    if not isinstance(data, dict):
        raise MalformedError("not_an_object", "the JSON body must be an object {...}", "body")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _CANONICAL.get(key.lower()) if isinstance(key, str) else None
        if name is None:
            raise InvalidFieldError(
                "unknown_field",
                f"unknown field {key!r}; accepted: {', '.join(sorted(_CANONICAL))}",
                str(key)[:64],
            )
        if name in fields:
            raise InvalidFieldError(
                "duplicate_field", f"{name!r} is given twice (under two names)", name
            )
        fields[name] = value
    return fields


def _text_fields(text: str) -> dict[str, Any]:
    """``ACTION SYMBOL [@ PRICE] [key=value ...]``."""
    tokens = text.replace("@", " @ ").split()
    if len(tokens) < 2:
        raise MalformedError(
            "unreadable_text",
            "a text alert reads 'ACTION SYMBOL [@ PRICE] [sl=.. tp=.. exchange=.. time=..]', "
            "e.g. 'BUY BTCUSDT @ 95000'",
            "body",
        )
    fields: dict[str, Any] = {"action": tokens[0], "symbol": tokens[1]}
    rest = tokens[2:]
    if rest and rest[0] == "@":
        if len(rest) < 2:
            raise InvalidFieldError("missing", "a price must follow '@'", "price")
        fields["price"] = rest[1]
        rest = rest[2:]
    for token in rest:
        key, sep, value = token.partition("=")
        name = _CANONICAL.get(key.lower())
        if not sep or name is None or name in ("symbol", "action"):
            raise InvalidFieldError(
                "unknown_token",
                f"unexpected {token[:40]!r}; after the price only key=value pairs are "
                "accepted (sl, tp, exchange, strategy, time, passphrase)",
                "body",
            )
        if name in fields:
            raise InvalidFieldError("duplicate_field", f"{name!r} is given twice", name)
        fields[name] = value
    return fields


# --- validating ---------------------------------------------------------------------------


def validate_alert(raw: RawAlert) -> Alert:
    """Every field checked; the first broken rule raises ``InvalidFieldError`` naming it."""
    f = raw.fields
    for name, value in f.items():
        # A NUL or a lone surrogate could be published but never stored downstream.
        reason = unstorable(value) if isinstance(value, str) else None
        if reason is not None:
            raise InvalidFieldError("invalid_text", f"{name} {reason}", name)
    return Alert(
        symbol=_symbol(f.get("symbol")),
        action=_action(f.get("action")),
        price=_decimal(f.get("price"), "price", upper=None),
        alert_time=_time(f.get("time")),
        strategy=_strategy(f.get("strategy")),
        stop_loss_percent=_decimal(f.get("sl"), "sl", upper=Decimal(100)),
        take_profit_percent=_decimal(f.get("tp"), "tp", upper=Decimal(100)),
        exchange=_exchange(f.get("exchange")),
    )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError("type", f"{field} must be a string", field)
    return value.strip()


def _symbol(value: Any) -> str:
    if value is None:
        raise InvalidFieldError("missing", "symbol is required, e.g. BTCUSDT", "symbol")
    symbol = _text(value, "symbol").upper()
    symbol = symbol.rsplit(":", 1)[-1]  # "BYBIT:BTCUSDT" ({{exchange}}:{{ticker}})
    symbol = symbol.removesuffix(".P")  # TradingView's perpetual suffix
    if not SYMBOL.match(symbol):
        raise InvalidFieldError(
            "pattern", "symbol must be 2-20 letters or digits, e.g. BTCUSDT", "symbol"
        )
    return symbol


def _action(value: Any) -> SignalAction:
    if value is None:
        raise InvalidFieldError("missing", "action is required: buy, sell or close", "action")
    word = _text(value, "action").lower()
    action = _ACTIONS.get(_ACTION_ALIASES.get(word, word))
    if action is None:
        raise InvalidFieldError("enum", "action must be buy, sell or close", "action")
    return action


def _decimal(value: Any, field: str, *, upper: Decimal | None) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidFieldError("type", f"{field} must be a number", field)
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise InvalidFieldError("number", f"{field} must be a decimal number", field) from exc
    if not number.is_finite() or number <= 0:
        raise InvalidFieldError("range", f"{field} must be a positive number", field)
    if upper is not None and number > upper:
        raise InvalidFieldError("range", f"{field} must be at most {upper} (percent)", field)
    if number.adjusted() > 15 or -number.as_tuple().exponent > 18:  # type: ignore[operator]
        raise InvalidFieldError("range", f"{field} has too many digits", field)
    return number


def _time(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | Decimal) or (isinstance(value, str) and value.isdigit()):
            epoch = Decimal(value)
            seconds = epoch / 1000 if epoch > 10**11 else epoch  # ms or s since the epoch
            moment = datetime.fromtimestamp(float(seconds), tz=UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError, InvalidOperation) as exc:
        raise InvalidFieldError(
            "datetime",
            "time must be ISO 8601 with a timezone (TradingView's {{timenow}}, e.g. "
            "2026-11-24T12:00:00Z) or epoch milliseconds",
            "time",
        ) from exc
    if moment.tzinfo is None:
        raise InvalidFieldError(
            "timezone", "time must include a timezone, e.g. a trailing Z", "time"
        )
    return moment.astimezone(UTC)


def _strategy(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value, "strategy")
    if len(text) > MAX_STRATEGY:
        raise InvalidFieldError(
            "too_long", f"strategy must be at most {MAX_STRATEGY} characters", "strategy"
        )
    return text or None


def _exchange(value: Any) -> Exchange | None:
    if value is None:
        return None
    word = _text(value, "exchange").lower()
    if not word:
        return None
    try:
        return Exchange(word)
    except ValueError as exc:
        raise InvalidFieldError("enum", "exchange must be bybit or binance", "exchange") from exc


# --- freshness and identity -----------------------------------------------------------------


def check_fresh(alert: Alert, now: datetime, max_age: timedelta, max_skew: timedelta) -> None:
    """A stale alert (older than ``max_age``) or one from the future is refused."""
    if alert.alert_time is None:
        return
    age = now - alert.alert_time
    if age > max_age:
        raise InvalidFieldError(
            "stale",
            f"the alert is {int(age.total_seconds())} s old; the limit is "
            f"{int(max_age.total_seconds())} s",
            "time",
        )
    if -age > max_skew:
        raise InvalidFieldError(
            "future",
            f"the alert time is {int(-age.total_seconds())} s in the future; the tolerance is "
            f"{int(max_skew.total_seconds())} s",
            "time",
        )


def _plain(number: Decimal | None) -> str | None:
    if number is None:
        return None
    text = format(number.normalize(), "f")
    return text


def canonical(alert: Alert, received_at: datetime, untimed_window: timedelta) -> str:
    """One text per alert, whatever its form, key order, aliases, case or number spelling.

    An alert without a time gets the receive time floored to ``untimed_window`` instead, so
    a resend within the window is the same alert and the same text tomorrow is a new one.
    """
    if alert.alert_time is not None:
        moment = alert.alert_time.isoformat().replace("+00:00", "Z")
    else:
        window = max(int(untimed_window.total_seconds()), 1)
        bucket = int(received_at.timestamp()) // window * window
        moment = f"untimed:{bucket}"
    body = {
        "action": alert.action.value,
        "exchange": alert.exchange.value if alert.exchange else None,
        "price": _plain(alert.price),
        "sl": _plain(alert.stop_loss_percent),
        "strategy": alert.strategy,
        "symbol": alert.symbol,
        "time": moment,
        "tp": _plain(alert.take_profit_percent),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def signal_id_for(source: str, canonical_body: str) -> uuid.UUID:
    """The signal id: the same source + canonical alert always gives the same id."""
    return derived_id("signal", source, canonical_body)
