from __future__ import annotations

import uuid
from datetime import UTC, datetime

from marketbot.contracts import SignalAction, SignalReceived

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def signal(signal_id: uuid.UUID | None = None) -> SignalReceived:
    sid = signal_id or uuid.uuid4()
    return SignalReceived(
        event_id=sid,
        occurred_at=NOW,
        correlation_id=str(sid),
        signal_id=sid,
        source="tv-main",
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        price="95000.50",
        received_at=NOW,
    )
