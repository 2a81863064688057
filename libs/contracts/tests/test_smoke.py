from marketbot.contracts import MESSAGE_TYPES


def test_registry_has_the_flow() -> None:
    assert {"SignalReceived", "DecisionMade", "OrderRequested", "OrderFilled"} <= set(MESSAGE_TYPES)
