"""One fully populated example of every message, used for round-trip and golden tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from marketbot.contracts import MESSAGE_TYPES, Envelope

T = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SIGNAL = uuid.UUID("00000000-0000-4000-8000-000000000001")
DECISION = uuid.UUID("00000000-0000-4000-8000-000000000002")
REQUEST = uuid.UUID("00000000-0000-4000-8000-000000000003")
CREDENTIAL = uuid.UUID("00000000-0000-4000-8000-000000000004")

ENVELOPE = {"occurred_at": T, "correlation_id": str(SIGNAL), "causation_id": None}
ORDER = {
    "request_id": REQUEST,
    "decision_id": DECISION,
    "signal_id": SIGNAL,
    "user_id": "u-1",
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "side": "BUY",
    "plan": "PRO",
    "client_order_id": "mb-0123456789abcdef0123456789abcdef",
}
PERMISSIONS = {
    "can_read": True,
    "can_trade": True,
    "can_withdraw": False,
    "ip_bound": True,
    "ips": ["203.0.113.7"],
    "expires_at": None,
}
OPERATION = {
    "operation_id": REQUEST,
    "signal_id": SIGNAL,
    "decision_id": DECISION,
    "user_id": "u-1",
    "exchange": "bybit",
    "symbol": "ETHUSDT",
    "side": "BUY",
    "plan": "FLEX",
    "status": "CLOSED",
    "client_order_id": "mb-x",
    "exchange_order_id": "1",
    "filled_quantity": "0.0100",
    "average_price": "3000.00",
    "exit_price": "3300.00",
    "fees_quote": "0.063",
    "realized_pnl": "2.937",
    "commission": "0.5874",
    "requested_at": T,
    "updated_at": T,
}

FIELDS: dict[str, dict[str, Any]] = {
    "SignalReceived": {
        "signal_id": SIGNAL,
        "source": "tv-main",
        "symbol": "BTCUSDT",
        "action": "buy",
        "price": "95000.50",
        "alert_time": T,
        "received_at": T,
        "strategy": "ema-cross",
        "stop_loss_percent": "2",
        "take_profit_percent": "4.5",
        "exchange": "bybit",
    },
    "DecisionMade": {
        "decision_id": DECISION,
        "signal_id": SIGNAL,
        "symbol": "BTCUSDT",
        "signal_action": "buy",
        "action": "BUY",
        "confidence": 72,
        "reasons": [
            {
                "code": "fear_greed",
                "value": "72",
                "contribution": "8.5",
                "text": "greed supports a buy",
            }
        ],
        "context": {
            "fear_greed": 72,
            "fear_greed_label": "Greed",
            "btc_dominance": "56.1",
            "top100_up_share": "0.64",
            "top100_median_change": "1.2",
            "ticker_price": "95010",
            "ticker_exchange": "bybit",
            "ticker_change_24h": "2.1",
            "btc_change_24h": "1.8",
            "market_cap_change_24h": "1.1",
            "stale": [],
            "missing": [],
            "errors": [],
        },
        "reference_price": "95010",
        "stop_loss_percent": "2",
        "take_profit_percent": "4.5",
        "exchange": None,
        "decided_at": T,
        "signal_price": "95000",
        "signal_time": T,
        "policy_id": "p-0123456789ab",
    },
    "OrderRequested": {
        **ORDER,
        "priority": 1,
        "not_before": T,
        "risk_level": "medium",
        "reference_price": "95010",
        "stop_loss_percent": "2",
        "take_profit_percent": "4",
        "allocation": "500",
        "allocation_currency": "BRL",
        "requested_at": T,
        "commission_rate": "0.10",
    },
    "OrderPlaced": {
        **ORDER,
        "exchange_order_id": "28",
        "quantity": "0.00010",
        "quote_amount": "10.00",
        "reference_price": "95010",
        "stop_loss_price": "93109.80",
        "take_profit_price": "98810.40",
        "placed_at": T,
    },
    "OrderFilled": {
        **ORDER,
        "exchange_order_id": "28",
        "fills": [
            {
                "trade_id": "56",
                "price": "95010.00",
                "quantity": "0.00010",
                "fee": "0.00000010",
                "fee_asset": "BTC",
                "fee_quote": "0.0095010",
            }
        ],
        "filled_quantity": "0.00010",
        "average_price": "95010.00",
        "quote_quantity": "9.5010",
        "fees_quote": "0.0095010",
        "filled_at": T,
    },
    "OrderRejected": {
        **ORDER,
        "reason": "FILTER",
        "message": "quantity 0.00001 is below LOT_SIZE minQty 0.00010",
        "exchange_code": "-1013",
        "rejected_at": T,
    },
    "OrderOutcomeUnknown": {**ORDER, "detail": "HTTP 503 after sending", "since": T},
    "PositionClosed": {
        **ORDER,
        "exchange_order_id": "29",
        "close_reason": "TAKE_PROFIT",
        "quantity": "0.00010",
        "entry_price": "95010",
        "exit_price": "98810.40",
        "fees_quote": "0.0193820",
        "realized_pnl": "0.3606580",
        "closed_at": T,
    },
    "UserRegistered": {
        "user_id": "u-1",
        "email": "ana@example.com",
        "display_name": "Ana",
        "referrer_id": "u-0",
    },
    "ReferrerAssigned": {"user_id": "u-1", "referrer_id": "u-0"},
    "SubscriptionChanged": {"user_id": "u-1", "plan": "PRO", "status": "ACTIVE", "expires_at": T},
    "TradingPreferencesChanged": {
        "user_id": "u-1",
        "preferred_exchange": "bybit",
        "risk_level": "high",
        "trading_mode": "PERSONAL",
        "allocation": "1000",
        "allocation_currency": "USDT",
    },
    "ApiKeyStored": {
        "user_id": "u-1",
        "exchange": "bybit",
        "credential_id": CREDENTIAL,
        "masked_key": "XyZ...4f9",
    },
    "ApiKeyVerified": {
        "user_id": "u-1",
        "exchange": "bybit",
        "credential_id": CREDENTIAL,
        "permissions": PERMISSIONS,
        "warnings": [],
        "verified_at": T,
    },
    "ApiKeyRejected": {
        "user_id": "u-1",
        "exchange": "binance",
        "credential_id": CREDENTIAL,
        "reason_code": "WITHDRAW_ENABLED",
        "message": "This key can withdraw funds. Create a key without withdrawals.",
        "permissions": {**PERMISSIONS, "can_withdraw": True},
    },
    "ApiKeyRevoked": {
        "user_id": "u-1",
        "exchange": "bybit",
        "credential_id": CREDENTIAL,
        "reason": "the exchange no longer accepts this key (10003)",
    },
    "CommissionAccrued": {
        "operation_id": REQUEST,
        "user_id": "u-1",
        "plan": "FLEX",
        "rate": "0.20",
        "realized_pnl": "2.937",
        "amount": "0.5874",
        "currency": "USDT",
        "referrer_id": "u-0",
        "affiliate_rate": "0.10",
        "affiliate_amount": "0.05874",
    },
    "OperationStatusChanged": {
        "operation_id": REQUEST,
        "user_id": "u-1",
        "exchange": "bybit",
        "symbol": "ETHUSDT",
        "side": "BUY",
        "status": "CLOSED",
        "detail": "take profit",
        "realized_pnl": "2.937",
    },
    "VaultPublicKeyRequest": {},
    "RegisterKeyRequest": {
        "user_id": "u-1",
        "exchange": "bybit",
        "api_key": "XyZAbCdEfGhIjK4f9",
        "sealed_secret": {
            "key_id": "v1",
            "ephemeral_public_key": "AAAA",
            "nonce": "BBBB",
            "ciphertext": "CCCC",
        },
    },
    "VerifyKeyRequest": {"user_id": "u-1", "exchange": "bybit"},
    "RevokeKeyRequest": {"user_id": "u-1", "exchange": "bybit", "reason": "revoked by user"},
    "KeyStatusRequest": {"user_id": "u-1", "exchange": None},
    "SignRequest": {
        "user_id": "u-1",
        "exchange": "binance",
        "method": "POST",
        "path": "/api/v3/order",
        "query": "",
        "body": "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=10&timestamp=1",
        "timestamp_ms": 1,
        "recv_window_ms": 5000,
    },
    "OperationsQuery": {
        "user_id": "u-1",
        "status": "CLOSED",
        "symbol": None,
        "page": 2,
        "page_size": 20,
    },
    "StatementQuery": {"user_id": "u-1", "since": "2026-11-01", "until": "2026-11-30"},
    "CommissionsQuery": {"user_id": None, "referrer_id": "u-0"},
    "SignalTraceQuery": {"signal_id": SIGNAL},
    "MessageDeadLettered": {
        "consumer": "executor-bybit-pro",
        "source_stream": "ORDER_REQUESTS",
        "source_subject": "orders.requested.bybit.pro",
        "stream_sequence": 42,
        "message_type": "OrderRequested",
        "message_id": str(REQUEST),
        "reason": "RuntimeError('venue down')",
        "permanent": False,
        "deliveries": 2,
        "history": [
            {"delivery": 1, "error": "RuntimeError('venue down')", "at": T},
            {"delivery": 2, "error": "RuntimeError('venue down')", "at": T},
        ],
        "payload_b64": "eyJ0eXBlIjoiT3JkZXJSZXF1ZXN0ZWQifQ==",
        "dead_lettered_at": T,
    },
}


def sample(type_name: str) -> Envelope:
    cls = MESSAGE_TYPES[type_name]
    return cls.model_validate(
        {
            "event_id": uuid.uuid5(SIGNAL, type_name),
            **ENVELOPE,
            **FIELDS[type_name],
        }
    )
