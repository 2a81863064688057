from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from marketbot.contracts import (
    MESSAGE_TYPES,
    ContractError,
    MessageDeadLettered,
    OrderRequested,
    Plan,
    PlanRule,
    PlanTable,
    SignalReceived,
    client_order_id_for,
    decode,
    request_id_for,
)
from marketbot.contracts.schema import write_schemas

from .samples import FIELDS, sample

GOLDEN = Path(__file__).parent / "golden"


def test_every_message_type_has_a_sample() -> None:
    assert set(FIELDS) == set(MESSAGE_TYPES)


@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
def test_round_trip_through_the_wire(type_name: str) -> None:
    message = sample(type_name)
    assert decode(message.to_json()) == message


@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
def test_the_current_version_matches_its_golden_json(type_name: str) -> None:
    message = sample(type_name)
    path = GOLDEN / f"{type_name}.v{message.schema_version}.json"
    golden = json.loads(path.read_text())
    assert json.loads(message.to_json()) == golden, f"wire format of {type_name} changed"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.name)
def test_every_golden_version_still_decodes(path: Path) -> None:
    data = json.loads(path.read_text())
    message = decode(data)
    assert message.schema_version == MESSAGE_TYPES[data["type"]].VERSION


def test_signal_received_v1_is_upcast_to_v2() -> None:
    v1 = json.loads((GOLDEN / "SignalReceived.v1.json").read_text())
    message = decode(v1)
    assert isinstance(message, SignalReceived)
    assert message.symbol == v1["ticker"]
    assert message.exchange is None
    assert message.schema_version == 2


def test_money_is_exact_and_travels_as_a_string() -> None:
    message = sample("OrderFilled")
    wire = json.loads(message.to_json())
    assert wire["average_price"] == "95010.00"
    assert wire["fills"][0]["fee"] == "0.00000010"
    assert decode(message.to_json()).average_price == Decimal("95010.00")  # type: ignore[attr-defined]


def test_floats_are_refused_for_money() -> None:
    data = json.loads(sample("OrderPlaced").to_json())
    data["quantity"] = 0.1
    with pytest.raises(ContractError, match="not a float"):
        decode(data)


def test_unknown_types_versions_and_bad_bodies_name_the_problem() -> None:
    with pytest.raises(ContractError, match="unknown message type"):
        decode({"type": "Nope"})
    data = json.loads(sample("DecisionMade").to_json())
    data["schema_version"] = 9
    with pytest.raises(ContractError, match="no upcaster"):
        decode(data)
    with pytest.raises(ContractError, match="not JSON"):
        decode(b"{")
    with pytest.raises(ContractError, match="not UTF-8"):
        decode(b"\xff not json")


def test_messages_are_frozen() -> None:
    message = sample("SignalReceived")
    with pytest.raises(ValidationError):
        message.symbol = "ETHUSDT"  # type: ignore[misc]


def test_the_type_field_cannot_lie() -> None:
    data = json.loads(sample("OrderPlaced").to_json())
    with pytest.raises(ValidationError, match="type must be"):
        OrderRequested.model_validate(data)


def test_order_ids_are_deterministic_and_fit_the_exchanges_alphabet() -> None:
    decision = uuid.uuid4()
    coid = client_order_id_for(decision, "user-42")
    assert coid == client_order_id_for(decision, "user-42")
    assert coid != client_order_id_for(decision, "user-43")
    assert len(coid) <= 36
    assert all(c.isalnum() or c in "-_" for c in coid)
    assert request_id_for(decision, "user-42") == request_id_for(decision, "user-42")


def test_subjects_route_orders_by_exchange_and_plan() -> None:
    assert sample("OrderRequested").subject() == "orders.requested.binance.pro"  # type: ignore[attr-defined]
    assert sample("OrderFilled").subject() == "orders.binance.OrderFilled"  # type: ignore[attr-defined]


def test_json_schema_is_written_for_every_message(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert len(written) == len(MESSAGE_TYPES)
    schema = json.loads((tmp_path / "OrderFilled.v2.json").read_text())
    assert schema["properties"]["average_price"]["type"] == "string"


@pytest.mark.parametrize("type_name", ["OrderPlaced", "OrderFilled", "PositionClosed"])
def test_order_events_v1_are_upcast_to_v2_without_claiming_what_v1_did_not_say(
    type_name: str,
) -> None:
    v1 = json.loads((GOLDEN / f"{type_name}.v1.json").read_text())
    message = decode(v1)
    assert message.schema_version == 2
    if type_name == "OrderPlaced":
        assert message.limit_price is None
    else:
        # v1 fees could be estimates without saying so: unknown, neither True nor False.
        assert message.fees_estimated is None


def test_order_requested_v1_is_upcast_with_the_rate_the_ledger_charged() -> None:
    v1 = json.loads((GOLDEN / "OrderRequested.v1.json").read_text())
    for plan, rate in (("PRO", "0.10"), ("FLEX", "0.20"), ("TRIAL", "0")):
        message = decode({**v1, "plan": plan})
        assert isinstance(message, OrderRequested)
        assert message.schema_version == 2
        assert message.commission_rate == Decimal(rate)


def test_the_plan_table_holds_every_per_plan_setting() -> None:
    table = PlanTable()
    assert table.order() == (Plan.PRO, Plan.FLEX, Plan.TRIAL)
    assert table.commission_rate(Plan.FLEX) == Decimal("0.20")
    swapped = PlanTable.model_validate(
        {
            "rules": {
                "PRO": {"priority": 2, "delay_ms": 0, "commission_rate": "0.1"},
                "FLEX": {"priority": 1, "delay_ms": 0, "commission_rate": "0.2"},
                "TRIAL": {"priority": 3, "delay_ms": 0, "commission_rate": "0"},
            }
        }
    )
    assert swapped.order() == (Plan.FLEX, Plan.PRO, Plan.TRIAL)
    with pytest.raises(ValidationError, match="no rule for TRIAL"):
        PlanTable.model_validate(
            {"rules": {"PRO": swapped.rules[Plan.PRO], "FLEX": swapped.rules[Plan.FLEX]}}
        )
    with pytest.raises(ValidationError, match="commission_rate"):
        PlanRule(priority=1, delay_ms=0, commission_rate=Decimal("1.5"))


def test_a_dead_letter_keeps_the_original_bytes() -> None:
    message = sample("MessageDeadLettered")
    assert isinstance(message, MessageDeadLettered)
    assert message.payload == b'{"type":"OrderRequested"}'
    assert message.subject() == "deadletters.executor-bybit-pro"


# --- text a consumer could never store (issue 14) -----------------------------------------


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
def test_no_message_carries_a_nul_or_a_lone_surrogate(type_name: str, bad: str) -> None:
    data = json.loads(sample(type_name).to_json())
    data["correlation_id"] = bad
    with pytest.raises(ContractError, match=r"^correlation_id: "):
        decode(json.dumps(data))
    with pytest.raises(ValidationError):
        MESSAGE_TYPES[type_name].model_validate(data)


def test_a_nul_in_a_signal_strategy_is_refused_naming_the_field() -> None:
    data = json.loads(sample("SignalReceived").to_json())
    data["strategy"] = "demo\x00"
    with pytest.raises(ContractError, match=r"^strategy: contains a NUL"):
        decode(json.dumps(data).encode())


def test_invalid_utf8_is_a_contract_error_not_a_crash() -> None:
    with pytest.raises(ContractError, match=r"^body: not UTF-8"):
        decode(b'{"type": "SignalReceived", "x": "\xff"}')
