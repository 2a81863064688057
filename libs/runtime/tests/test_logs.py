"""A secret logged in any form must appear nowhere in the output."""

from __future__ import annotations

import io
import json
import logging

from marketbot.runtime.logs import correlation, get_logger, redactor

CANARY_SECRET = "Zq8xW2vB7nK4mP9rT1yU6iO3aS5dF0gH2jL8kZ4x"  # 40 alnum chars, like an API secret
CANARY_SHORT = "hunter2-passphrase"


def test_secrets_are_redacted_by_key_value_and_registration(log_output: io.StringIO) -> None:
    redactor.register(CANARY_SHORT)
    log = get_logger("test")
    with correlation("sig-123"):
        log.info("by key", api_secret=CANARY_SECRET, headers={"X-BAPI-SIGN": "abc", "ok": 1})
        log.info(f"inline value {CANARY_SECRET} in the message")
        log.info("nested", payload={"list": [CANARY_SECRET, {"password": "p"}]})
        log.info("registered value", note=f"user typed {CANARY_SHORT} somewhere")
        logging.getLogger("thirdparty").warning("stdlib with %s", CANARY_SECRET)
        try:
            raise ValueError(f"bad secret {CANARY_SECRET}")
        except ValueError:
            log.exception("exception text")
    redactor.forget(CANARY_SHORT)
    output = log_output.getvalue()
    assert CANARY_SECRET not in output
    assert CANARY_SHORT not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 6
    assert all(line["correlation_id"] == "sig-123" for line in lines)
    assert lines[0]["api_secret"] == "[REDACTED]"
    assert lines[0]["headers"] == {"X-BAPI-SIGN": "[REDACTED]", "ok": 1}


def test_ordinary_ids_survive_redaction(log_output: io.StringIO) -> None:
    client_order_id = "mb-0123456789abcdef0123456789abcdef"
    get_logger("test").info("placed", client_order_id=client_order_id, qty="0.001")
    line = json.loads(log_output.getvalue().splitlines()[-1])
    assert line["client_order_id"] == client_order_id
