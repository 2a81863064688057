"""Rotation re-wraps every row under the newest master key; retired versions are refused."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from marketbot.contracts import Exchange
from marketbot.exchanges.bybit.signing import ws_auth_request
from marketbot.exchanges.errors import Rejected
from marketbot.exchanges.signer import SigningInput
from marketbot.keyvault.adapters.keysource import KeyMaterialError, load_keyring
from marketbot.keyvault.cli import main
from marketbot.keyvault.client import VaultClient, VaultSigner
from marketbot.keyvault.domain.masterkeys import format_master_key, generate_master_key
from marketbot.keyvault.rotation import rotate
from marketbot.keyvault.settings import KeyvaultSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.clock import SystemClock

from .conftest import VaultFactory


def account_request() -> SigningInput:
    """A harmless signed read, stamped now (the vault signs only current timestamps)."""
    # the private-stream auth: a signature the vault hands out (REST is sent by the vault)
    return ws_auth_request(now_ms())


async def test_rotation_rewraps_every_row_and_retired_versions_are_refused(
    vaults: VaultFactory,
    client: VaultClient,
    bus: Bus,
    migrated: asyncpg.Pool,
    make_key: Callable[..., Any],
) -> None:
    first = await vaults.start()
    users = []
    for n, exchange in enumerate([Exchange.BYBIT, Exchange.BINANCE, Exchange.BYBIT]):
        key = await make_key(exchange, ips=["127.0.0.1"])
        assert (await client.register(f"user-{n}", exchange, key.api_key, key.secret)).ok
        users.append((f"user-{n}", exchange, key.api_key))
    await client.revoke("user-2", Exchange.BYBIT)  # inactive rows are re-wrapped too
    await first.close()
    vaults.started.remove(first)
    before = {
        r["credential_id"]: (r["wrapped_data_key"], r["ciphertext"])
        for r in await migrated.fetch("SELECT * FROM credentials")
    }
    assert {r["master_key_version"] for r in await migrated.fetch("SELECT * FROM credentials")} == {
        1
    }

    two = f"{vaults.master_keys},{format_master_key(2, generate_master_key())}"
    # Retiring version 1 before rotating: the rows cannot be read, signing is refused.
    retired_early = await vaults.start(master_keys=two, min_decrypt_version=2)
    with pytest.raises(Rejected) as caught:
        await VaultSigner(bus, "user-0", Exchange.BYBIT).sign(account_request())
    assert "register it again" in caught.value.message
    await retired_early.close()
    vaults.started.remove(retired_early)

    report = await rotate(migrated, load_keyring(vaults.settings(master_keys=two)), SystemClock())
    assert report.rewrapped == 3
    assert report.failed == []
    assert report.by_version_after == {2: 3}
    after = await migrated.fetch("SELECT * FROM credentials")
    for row in after:
        old_wrapped, old_ciphertext = before[row["credential_id"]]
        assert row["master_key_version"] == 2
        assert bytes(row["ciphertext"]) == bytes(old_ciphertext)
        assert bytes(row["wrapped_data_key"]) != bytes(old_wrapped)
    audit = await migrated.fetch("SELECT detail FROM audit_log WHERE action = 'rotate'")
    assert len(audit) == 3
    again = await rotate(migrated, load_keyring(vaults.settings(master_keys=two)), SystemClock())
    assert again.rewrapped == 0

    # Only version 2 is needed now: version 1 can be retired, and signing works.
    only_two = two.split(",", 1)[1]
    await vaults.start(master_keys=only_two)
    signature = await VaultSigner(bus, "user-0", Exchange.BYBIT).sign(account_request())
    assert signature.api_key == users[0][2]
    stamp = now_ms()
    binance = SigningInput(
        Exchange.BINANCE,
        "GET",
        "/api/v3/account",
        f"omitZeroBalances=false&timestamp={stamp}",
        "",
        stamp,
        5000,
    )
    assert (await VaultSigner(bus, "user-1", Exchange.BINANCE).sign(binance)).signature


async def test_a_row_under_a_retired_key_is_reported_by_rotation(
    vaults: VaultFactory, client: VaultClient, migrated: asyncpg.Pool, make_key: Callable[..., Any]
) -> None:
    running = await vaults.start()
    key = await make_key(Exchange.BYBIT, ips=["127.0.0.1"])
    assert (await client.register("user-r", Exchange.BYBIT, key.api_key, key.secret)).ok
    await running.close()
    vaults.started.remove(running)
    two = f"{vaults.master_keys},{format_master_key(2, generate_master_key())}"
    ring = load_keyring(vaults.settings(master_keys=two, min_decrypt_version=2))
    report = await rotate(migrated, ring, SystemClock())
    assert report.rewrapped == 0
    assert len(report.failed) == 1
    assert "retired" in report.failed[0]


def test_generate_master_key_and_sealing_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-master-key", "--version", "3"]) == 0
    version, key = capsys.readouterr().out.strip().split(":")
    assert version == "3"
    assert len(base64.b64decode(key)) == 32
    assert main(["generate-sealing-key"]) == 0
    out = capsys.readouterr()
    assert len(base64.b64decode(out.out.strip())) == 32
    assert "x25519:" in out.err


def test_key_material_errors_name_the_setting_never_the_key() -> None:
    with pytest.raises(KeyMaterialError, match="MASTER_KEYS"):
        load_keyring(KeyvaultSettings())
    bad = "1:" + base64.b64encode(b"z" * 31).decode()
    with pytest.raises(KeyMaterialError) as caught:
        load_keyring(KeyvaultSettings(master_keys=SecretStr(bad)))
    assert bad[2:] not in str(caught.value)
    assert "**********" in repr(KeyvaultSettings(master_keys=SecretStr(bad)))


def test_a_passphrase_derives_a_master_key() -> None:
    settings = KeyvaultSettings(
        master_passphrase=SecretStr("correct horse battery staple"),
        master_passphrase_salt=base64.b64encode(b"s" * 16).decode(),
        master_passphrase_version=4,
    )
    ring = load_keyring(settings)
    assert ring.current_version == 4
    with pytest.raises(ValueError, match="600000"):
        KeyvaultSettings(master_passphrase_iterations=1000)


def now_ms() -> int:
    return int(time.time() * 1000)
