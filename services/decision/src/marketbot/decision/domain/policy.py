"""The decision policy: a deterministic, explainable score (Decimal arithmetic, no I/O).

``score = base + sum(contributions)``, each contribution quantized to 0.01 so the reasons add
up exactly to the score; ``confidence = clamp(round_half_up(score), 0, 100)``. With ``d`` = +1
for a buy signal and -1 for a sell/close signal and ``clamp1(x) = max(-1, min(1, x))``:

* fear_greed:        ``w_fg * d * (index - 50) / 50`` (greed supports buys with a positive
  weight; a negative weight makes the policy contrarian)
* btc_dominance_trend: the 24 h change of BTC dominance in percentage points,
  ``D * (1 - (1 + mcap_change/100) / (1 + btc_change/100))``; rising dominance supports buying
  BTC and opposes buying anything else: ``w_dom * d * a * clamp1(trend / dominance_scale_pp)``
  with ``a`` = +1 for BTC pairs, -1 otherwise
* breadth_up_share:  ``w_breadth * d * (2 * share_up - 1)`` over the top 100
* breadth_median_change: ``w_median * d * clamp1(median / median_change_scale)``
* ticker_momentum:   ``w_momentum * d * clamp1(ticker_change_24h / momentum_scale)``
* price_deviation:   ``-w_deviation * min(1, deviation% / max_deviation_percent)``
* signal_age:        ``-w_age * min(1, age_s / max_signal_age_s)``
* ``<provider>_missing``: ``-missing_penalty``; ``<provider>_stale``: ``-stale_penalty``

HOLD when the price deviates more than ``max_deviation_percent``, the signal is older than
``max_signal_age_s``, or the confidence is below ``threshold``; otherwise the signal's side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field

from marketbot.contracts import DecisionAction, DecisionMade, MarketContext, Reason, SignalAction

ONE = Decimal(1)
CENT = Decimal("0.01")

PROVIDER_LABELS = {
    "fear_greed": "Fear & Greed (alternative.me)",
    "btc_dominance": "BTC dominance (CoinGecko global)",
    "top100": "top-100 movement (CoinGecko markets)",
    "ticker": "exchange ticker",
}


class PolicySettings(BaseModel):
    """Weights are in confidence points at full strength; thresholds as named."""

    model_config = ConfigDict(frozen=True)

    base_confidence: Decimal = Decimal(60)
    threshold: Decimal = Field(default=Decimal(50), description="HOLD below this confidence")
    weight_fear_greed: Decimal = Decimal(10)
    weight_dominance: Decimal = Decimal(6)
    dominance_scale_pp: Decimal = Field(default=Decimal(1), gt=0)
    weight_breadth: Decimal = Decimal(8)
    weight_median_change: Decimal = Decimal(6)
    median_change_scale: Decimal = Field(default=Decimal(5), gt=0)
    weight_momentum: Decimal = Decimal(5)
    momentum_scale: Decimal = Field(default=Decimal(5), gt=0)
    weight_deviation: Decimal = Decimal(15)
    max_deviation_percent: Decimal = Field(default=Decimal("1.5"), gt=0)
    weight_age: Decimal = Decimal(10)
    max_signal_age_s: Decimal = Field(default=Decimal(300), gt=0)
    missing_penalty: Decimal = Decimal(8)
    stale_penalty: Decimal = Decimal(3)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()
        return f"p-{digest[:12]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyInputs:
    symbol: str
    signal_action: SignalAction
    signal_price: Decimal | None
    signal_time: datetime
    decided_at: datetime
    context: MarketContext


@dataclass(frozen=True, slots=True)
class Decision:
    action: DecisionAction
    confidence: int
    reasons: tuple[Reason, ...]
    score: Decimal


def clamp1(x: Decimal) -> Decimal:
    return max(-ONE, min(ONE, x))


def _q(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN) + 0  # + 0 turns -0.00 into 0.00


def _num(x: Decimal) -> str:
    return format(x.normalize(), "f") if x == x.to_integral_value() else format(x, "f")


def _effect(contribution: Decimal, side: str) -> str:
    if contribution > 0:
        return f"supports a {side}"
    if contribution < 0:
        return f"opposes a {side}"
    return f"is neutral to a {side}"


def dominance_trend(ctx: MarketContext) -> Decimal | None:
    """BTC dominance change over 24 h in percentage points (None without its inputs)."""
    if ctx.btc_dominance is None or ctx.btc_change_24h is None:
        return None
    if ctx.market_cap_change_24h is None:
        return None
    btc_growth = ONE + ctx.btc_change_24h / 100
    if btc_growth <= 0:
        return None
    return ctx.btc_dominance * (ONE - (ONE + ctx.market_cap_change_24h / 100) / btc_growth)


def decide(inputs: PolicyInputs, settings: PolicySettings) -> Decision:
    s = settings
    ctx = inputs.context
    buying = inputs.signal_action is SignalAction.BUY
    d = ONE if buying else -ONE
    side = "buy" if buying else "sell"
    reasons: list[Reason] = []
    holds: list[str] = []

    def add(code: str, value: object, contribution: Decimal, text: str) -> None:
        reasons.append(
            Reason(
                code=code,
                value=None if value is None else str(value),
                contribution=_q(contribution),
                text=text,
            )
        )

    add(
        "signal",
        inputs.signal_action.value,
        s.base_confidence,
        f"{inputs.signal_action.value} signal for {inputs.symbol}: base confidence "
        f"{_num(s.base_confidence)}",
    )

    if ctx.fear_greed is not None:
        c = s.weight_fear_greed * d * (Decimal(ctx.fear_greed) - 50) / 50
        label = f" ({ctx.fear_greed_label})" if ctx.fear_greed_label else ""
        add(
            "fear_greed",
            ctx.fear_greed,
            c,
            f"Fear & Greed {ctx.fear_greed}{label} {_effect(_q(c), side)}",
        )

    trend = dominance_trend(ctx)
    if trend is not None:
        is_btc = inputs.symbol.startswith("BTC")
        alignment = ONE if is_btc else -ONE
        c = s.weight_dominance * d * alignment * clamp1(trend / s.dominance_scale_pp)
        direction = "rising" if trend > 0 else "falling" if trend < 0 else "flat"
        subject = "BTC" if is_btc else f"{inputs.symbol} (not BTC)"
        add(
            "btc_dominance_trend",
            _q(trend),
            c,
            f"BTC dominance {_num(ctx.btc_dominance or Decimal(0))}% {direction} "
            f"({_num(_q(trend))} pp in 24 h) {_effect(_q(c), side)} of {subject}",
        )

    if ctx.top100_up_share is not None:
        c = s.weight_breadth * d * (2 * ctx.top100_up_share - 1)
        add(
            "breadth_up_share",
            ctx.top100_up_share,
            c,
            f"{_num(ctx.top100_up_share * 100)}% of the top 100 up in 24 h {_effect(_q(c), side)}",
        )
    if ctx.top100_median_change is not None:
        c = s.weight_median_change * d * clamp1(ctx.top100_median_change / s.median_change_scale)
        add(
            "breadth_median_change",
            ctx.top100_median_change,
            c,
            f"median 24 h change of the top 100 {_num(ctx.top100_median_change)}% "
            f"{_effect(_q(c), side)}",
        )
    if ctx.ticker_change_24h is not None:
        c = s.weight_momentum * d * clamp1(ctx.ticker_change_24h / s.momentum_scale)
        add(
            "ticker_momentum",
            ctx.ticker_change_24h,
            c,
            f"{inputs.symbol} {_num(ctx.ticker_change_24h)}% in 24 h on "
            f"{ctx.ticker_exchange.value if ctx.ticker_exchange else '?'} {_effect(_q(c), side)}",
        )

    if inputs.signal_price is None:
        add("price_deviation", None, Decimal(0), "the signal carries no price to check")
    elif ctx.ticker_price is None or ctx.ticker_price <= 0:
        add("price_deviation", None, Decimal(0), "no live price to check the signal price against")
    else:
        deviation = abs(inputs.signal_price - ctx.ticker_price) / ctx.ticker_price * 100
        c = -s.weight_deviation * min(ONE, deviation / s.max_deviation_percent)
        text = (
            f"signal price {_num(inputs.signal_price)} is {_num(_q(deviation))}% from the live "
            f"{_num(ctx.ticker_price)} (max {_num(s.max_deviation_percent)}%)"
        )
        if deviation > s.max_deviation_percent:
            holds.append("price_deviation")
        add("price_deviation", _q(deviation), c, text)

    age = max(Decimal(0), Decimal(str((inputs.decided_at - inputs.signal_time).total_seconds())))
    c = -s.weight_age * min(ONE, age / s.max_signal_age_s)
    if age > s.max_signal_age_s:
        holds.append("signal_age")
    add(
        "signal_age",
        _q(age),
        c,
        f"signal is {_num(_q(age))} s old (max {_num(s.max_signal_age_s)} s)",
    )

    for provider in ctx.missing:
        label = PROVIDER_LABELS.get(provider, provider)
        add(
            f"{provider}_missing",
            None,
            -s.missing_penalty,
            f"{label} unavailable: confidence reduced",
        )
    for provider in ctx.stale:
        label = PROVIDER_LABELS.get(provider, provider)
        add(
            f"{provider}_stale",
            None,
            -s.stale_penalty,
            f"{label} is a stale value: confidence reduced",
        )

    score = sum((r.contribution for r in reasons), Decimal(0))
    confidence = int(
        max(Decimal(0), min(Decimal(100), score.quantize(ONE, rounding=ROUND_HALF_UP)))
    )
    if holds:
        action = DecisionAction.HOLD
        add("hold", ",".join(holds), Decimal(0), f"HOLD: {' and '.join(holds)} over the limit")
    elif confidence < s.threshold:
        action = DecisionAction.HOLD
        add(
            "threshold",
            confidence,
            Decimal(0),
            f"HOLD: confidence {confidence} below the threshold {_num(s.threshold)}",
        )
    else:
        action = DecisionAction.BUY if buying else DecisionAction.SELL
        add(
            "threshold",
            confidence,
            Decimal(0),
            f"{action.value}: confidence {confidence} meets the threshold {_num(s.threshold)}",
        )
    return Decision(action, confidence, tuple(reasons), score)


def inputs_of(decision: DecisionMade) -> PolicyInputs:
    """The policy inputs recorded in a DecisionMade, for audit and replay."""
    return PolicyInputs(
        symbol=decision.symbol,
        signal_action=decision.signal_action,
        signal_price=decision.signal_price,
        signal_time=decision.signal_time or decision.decided_at,
        decided_at=decision.decided_at,
        context=decision.context,
    )


def replay(decision: DecisionMade, settings: PolicySettings) -> Decision:
    return decide(inputs_of(decision), settings)
