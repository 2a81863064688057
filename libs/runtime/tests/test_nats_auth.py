"""Every service's NATS credential, tried against a real nats-server running the generated
configuration (the exact, production form: no prefix, and a prefixed namespace).

The expectations below are written by hand from the event flow (issue 14), not derived from
the permission map, so a map that grants too much fails here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoServersError

from marketbot.contracts import BusNamespace, Exchange
from marketbot.contracts.access import GRANTS, SERVICES, inbox_prefix
from marketbot.runtime.bus import Bus, NatsCredentials
from marketbot.runtime.infra import EmbeddedNats, free_port, nats_server_binary, wait_for_port
from marketbot.runtime.natsauth import NatsAuth, deployment_auth_config, env_name, public_key
from marketbot.runtime.testing import eventually

pytestmark = pytest.mark.xdist_group("nats-auth")

_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"')


@dataclass
class Server:
    url: str
    auth: NatsAuth
    prefix: str

    def s(self, subject: str) -> str:
        return BusNamespace(self.prefix).subject(subject)

    def stream(self, name: str) -> str:
        return BusNamespace(self.prefix).stream(name)

    def consumer(self, name: str) -> str:
        return BusNamespace(self.prefix).durable(name)


@pytest.fixture(scope="module", params=["", "p7"], ids=["no-prefix", "prefix"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    auth = NatsAuth.generate()
    embedded = EmbeddedNats(
        tmp_path_factory.mktemp("natsauth"), auth=auth, auth_prefix=request.param
    )
    url = embedded.start()
    try:
        yield Server(url, auth, request.param)
    finally:
        embedded.stop()


@dataclass
class Probe:
    nc: Client
    violations: list[tuple[str, str]]

    async def refused(self, expect: int = 0) -> set[tuple[str, str]]:
        """(kind, subject) of every violation, once at least ``expect`` have arrived (the
        server's -ERR lines can come after a flush's PONG). nats-py lower-cases the server's
        text, so subjects come back lower-cased."""
        await self.nc.flush()
        await eventually(lambda: len(self.violations) >= expect, message="violations")
        await self.nc.flush()
        return set(self.violations)


async def connect_as(server: Server, service: str) -> Probe:
    violations: list[tuple[str, str]] = []

    async def on_error(exc: Exception) -> None:
        found = _VIOLATION.search(str(exc))
        if found:
            violations.append((found.group(1), found.group(2).lower()))

    nc = await nats.connect(
        server.url,
        nkeys_seed_str=server.auth.seed(service),
        inbox_prefix=inbox_prefix(service),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return Probe(nc, violations)


@pytest.fixture
async def operator(server: Server) -> AsyncIterator[Bus]:
    bus = await Bus.connect(server.auth.operator_url(server.url), "op", BusNamespace(server.prefix))
    await bus.provision()
    try:
        yield bus
    finally:
        await bus.close()


# --------------------------------------------------------------------------- who is refused


async def test_a_client_without_a_credential_is_refused(server: Server) -> None:
    with pytest.raises((nats.errors.Error, NoServersError, OSError)):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_a_client_with_an_unknown_key_is_refused(server: Server) -> None:
    stranger = NatsAuth.generate().seed("ledger")
    with pytest.raises((nats.errors.Error, NoServersError, OSError)):
        await nats.connect(
            server.url, nkeys_seed_str=stranger, allow_reconnect=False, max_reconnect_attempts=0
        )


async def test_a_wrong_operator_password_is_refused(server: Server) -> None:
    url = server.url.replace("nats://", "nats://operator:guess@")
    with pytest.raises((nats.errors.Error, NoServersError, OSError)):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)


# ---------------------------------------------------------------- the publish/subscribe matrix

PUBLISH = (
    "signals.received",
    "accounts.UserRegistered",
    "decisions.made",
    "orders.requested.bybit.pro",
    "orders.requested.binance.trial",
    "orders.bybit.OrderFilled",
    "orders.binance.PositionClosed",
    "keys.ApiKeyRevoked",
    "ledger.CommissionAccrued",
    "keyvault.sign.bybit",
    "keyvault.sign.binance",
    "keyvault.sign",
    "keyvault.signbatch.bybit",
    "keyvault.signbatch.binance",
    "keyvault.register",
    "keyvault.revoke",
    "keyvault.internal.invalidate",
    "ledger.query.operations",
    "_INBOX_executor_bybit.abc.1",
    "deadletters.executor-bybit-pro",
    "deadletters.executor-binance-pro",
    "deadletters.decision-signals",
    "deadletters.ledger_signals",
    "deadletters.keyvault-order-requests",
)
"""Namespace-relative subjects every identity tries to publish to."""

MAY_PUBLISH: dict[str, set[str]] = {
    "signal-gateway": {
        "signals.received",
        "accounts.UserRegistered",
        "keyvault.register",
        "keyvault.revoke",
        "ledger.query.operations",
    },
    "decision": {
        "decisions.made",
        "orders.requested.bybit.pro",
        "orders.requested.binance.trial",
        "deadletters.decision-signals",
    },
    "executor-bybit": {
        "orders.bybit.OrderFilled",
        "keyvault.sign.bybit",
        "keyvault.signbatch.bybit",
        "deadletters.executor-bybit-pro",
    },
    "executor-binance": {
        "orders.binance.PositionClosed",
        "keyvault.sign.binance",
        "keyvault.signbatch.binance",
        "deadletters.executor-binance-pro",
    },
    "keyvault": {
        "keys.ApiKeyRevoked",
        "keyvault.internal.invalidate",
        "deadletters.keyvault-order-requests",
    },
    "ledger": {"ledger.CommissionAccrued", "deadletters.ledger_signals"},
}

JS_API = (
    "STREAM.CREATE.{ORDER_REQUESTS}",
    "STREAM.UPDATE.{ORDER_REQUESTS}",
    "STREAM.DELETE.{ORDER_REQUESTS}",
    "STREAM.PURGE.{ORDER_REQUESTS}",
    "STREAM.MSG.GET.{ORDER_REQUESTS}",
    "STREAM.MSG.DELETE.{ORDER_REQUESTS}",
    "DIRECT.GET.{ORDER_REQUESTS}",
    "STREAM.INFO.{ORDER_REQUESTS}",
    "STREAM.INFO.{KEYS}",
    "CONSUMER.MSG.NEXT.{ORDER_REQUESTS}.{executor-bybit-pro}",
    "CONSUMER.MSG.NEXT.{ORDER_REQUESTS}.{ledger_order_requests}",
    "CONSUMER.MSG.NEXT.{ORDER_REQUESTS}.{keyvault-order-requests}",
    "CONSUMER.DELETE.{ORDER_REQUESTS}.{executor-bybit-pro}",
    "CONSUMER.DURABLE.CREATE.{ORDER_REQUESTS}.{executor-binance-pro}",
    "CONSUMER.CREATE.{ORDER_REQUESTS}",
    "CONSUMER.MSG.NEXT.{SIGNALS}.{decision-signals}",
    "CONSUMER.CREATE.{ORDER_EVENTS}",
    "STREAM.MSG.GET.{SIGNALS}",
    "STREAM.MSG.GET.{DEAD_LETTERS}",
    "STREAM.INFO.{DEAD_LETTERS}",
)
"""JetStream API calls (``$JS.API.`` + this); ``{NAME}`` is a stream or consumer."""

MAY_CALL: dict[str, set[str]] = {
    # the admin API reads recent signals and the dead letters by sequence
    "signal-gateway": {
        "CONSUMER.CREATE.{ORDER_EVENTS}",
        "STREAM.MSG.GET.{SIGNALS}",
        "STREAM.MSG.GET.{DEAD_LETTERS}",
        "STREAM.INFO.{DEAD_LETTERS}",
    },
    # a consumer reads its own stream by sequence (a max-deliveries message is copied to
    # DEAD_LETTERS from there) and waits for DEAD_LETTERS, where it dead-letters
    "decision": {
        "STREAM.INFO.{ORDER_REQUESTS}",
        "STREAM.INFO.{KEYS}",
        "CONSUMER.MSG.NEXT.{SIGNALS}.{decision-signals}",
        "STREAM.MSG.GET.{SIGNALS}",
        "STREAM.INFO.{DEAD_LETTERS}",
    },
    "executor-bybit": {
        "STREAM.INFO.{ORDER_REQUESTS}",
        "CONSUMER.MSG.NEXT.{ORDER_REQUESTS}.{executor-bybit-pro}",
        "STREAM.MSG.GET.{ORDER_REQUESTS}",
        "STREAM.INFO.{DEAD_LETTERS}",
    },
    "executor-binance": {
        "STREAM.INFO.{ORDER_REQUESTS}",
        "CONSUMER.DURABLE.CREATE.{ORDER_REQUESTS}.{executor-binance-pro}",
        "STREAM.MSG.GET.{ORDER_REQUESTS}",
        "STREAM.INFO.{DEAD_LETTERS}",
    },
    # the order requests it bounds order signatures by: its own durable only
    "keyvault": {
        "STREAM.INFO.{KEYS}",
        "STREAM.INFO.{ORDER_REQUESTS}",
        "CONSUMER.MSG.NEXT.{ORDER_REQUESTS}.{keyvault-order-requests}",
        "STREAM.MSG.GET.{ORDER_REQUESTS}",
        "STREAM.INFO.{DEAD_LETTERS}",
    },
    "ledger": {
        "STREAM.INFO.{ORDER_REQUESTS}",
        "CONSUMER.MSG.NEXT.{ORDER_REQUESTS}.{ledger_order_requests}",
        "STREAM.MSG.GET.{ORDER_REQUESTS}",
        "STREAM.MSG.GET.{SIGNALS}",
        "STREAM.INFO.{DEAD_LETTERS}",
    },
}

SUBSCRIBE = (
    ">",
    "signals.received",
    "orders.requested.>",
    "orders.>",
    "keyvault.sign.*",
    "keyvault.sign.bybit",
    "keyvault.signbatch.*",
    "keyvault.signbatch.bybit",
    "keyvault.register",
    "ledger.query.operations",
    "keyvault.internal.invalidate",
)

MAY_SUBSCRIBE: dict[str, set[str]] = {
    "signal-gateway": set(),
    "decision": set(),
    "executor-bybit": set(),
    "executor-binance": set(),
    "keyvault": {
        "keyvault.sign.*",
        "keyvault.sign.bybit",
        "keyvault.signbatch.*",
        "keyvault.signbatch.bybit",
        "keyvault.register",
        "keyvault.internal.invalidate",
    },
    "ledger": {"ledger.query.operations"},
}

INBOXES = ("_INBOX", *(inbox_prefix(s) for s in SERVICES))

ADVISORIES = (
    "{ORDER_REQUESTS}.{executor-bybit-pro}",
    "{ORDER_REQUESTS}.{executor-binance-trial}",
    "{SIGNALS}.{decision-signals}",
    "{ORDER_REQUESTS}.{ledger_order_requests}",
    "{ORDER_REQUESTS}.{keyvault-order-requests}",
)
"""Max-deliveries advisories (``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.`` + this): a
message loop hears those of its own consumers only."""

MAY_HEAR: dict[str, set[str]] = {
    "signal-gateway": set(),
    "decision": {"{SIGNALS}.{decision-signals}"},
    "executor-bybit": {"{ORDER_REQUESTS}.{executor-bybit-pro}"},
    "executor-binance": {"{ORDER_REQUESTS}.{executor-binance-trial}"},
    "keyvault": {"{ORDER_REQUESTS}.{keyvault-order-requests}"},
    "ledger": {"{ORDER_REQUESTS}.{ledger_order_requests}"},
}


def _advisory(server: Server, template: str) -> str:
    return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + _api(server, template).removeprefix(
        "$JS.API."
    )


def _api(server: Server, template: str) -> str:
    def name(match: re.Match[str]) -> str:
        token = match.group(1)
        return server.stream(token) if token.isupper() else server.consumer(token)

    return "$JS.API." + re.sub(r"\{([^}]+)\}", name, template)


def test_the_expectations_cover_every_service() -> None:
    assert set(MAY_PUBLISH) == set(MAY_CALL) == set(MAY_SUBSCRIBE) == set(SERVICES)
    assert set(MAY_HEAR) == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
async def test_each_credential_publishes_only_where_the_flow_says(
    server: Server, service: str
) -> None:
    probe = await connect_as(server, service)
    try:
        subjects = {server.s(s): s for s in PUBLISH}
        subjects |= {_api(server, t): t for t in JS_API}
        for subject in subjects:
            await probe.nc.publish(subject, b"{}")
        allowed = MAY_PUBLISH[service] | MAY_CALL[service]
        expected = set(subjects.values()) - allowed
        lower = {k.lower(): v for k, v in subjects.items()}
        found = await probe.refused(len(expected))
        refused = {lower[s] for kind, s in found if kind == "publish"}
    finally:
        await probe.nc.close()
    assert refused == expected, service


@pytest.mark.parametrize("service", SERVICES)
async def test_each_credential_subscribes_only_where_the_flow_says(
    server: Server, service: str
) -> None:
    probe = await connect_as(server, service)
    try:
        subjects = {server.s(s): s for s in SUBSCRIBE}
        subjects |= {f"{inbox}.>": f"{inbox}.>" for inbox in INBOXES}
        subjects |= {_advisory(server, t): t for t in ADVISORIES}
        for subject in subjects:
            await probe.nc.subscribe(subject)
        allowed = MAY_SUBSCRIBE[service] | MAY_HEAR[service] | {f"{inbox_prefix(service)}.>"}
        expected = set(subjects.values()) - allowed
        lower = {k.lower(): v for k, v in subjects.items()}
        found = await probe.refused(len(expected))
        refused = {lower[s] for kind, s in found if kind == "subscription"}
    finally:
        await probe.nc.close()
    assert refused == expected, service


def test_every_granted_service_is_probed() -> None:
    assert set(GRANTS) == set(SERVICES)


# ------------------------------------------------------------------------ the named attacks


async def test_a_forged_order_request_with_the_gateway_credential_never_lands(
    server: Server, operator: Bus
) -> None:
    for service in ("signal-gateway", "ledger"):
        probe = await connect_as(server, service)
        try:
            js = probe.nc.jetstream()
            with pytest.raises(nats.errors.Error):
                await js.publish(server.s("orders.requested.bybit.pro"), b"{}", timeout=1)
            assert ("publish", server.s("orders.requested.bybit.pro")) in await probe.refused(1)
        finally:
            await probe.nc.close()
    info = await operator.js.stream_info(operator.stream("ORDER_REQUESTS"))
    assert info.state.messages == 0


async def test_the_decision_credential_can_publish_an_order_request(
    server: Server, operator: Bus
) -> None:
    probe = await connect_as(server, "decision")
    try:
        ack = await probe.nc.jetstream().publish(server.s("orders.requested.bybit.pro"), b"{}")
        assert ack.seq >= 1
    finally:
        await probe.nc.close()


async def _vault_responder(server: Server) -> tuple[Probe, list[str]]:
    vault = await connect_as(server, "keyvault")
    seen: list[str] = []

    async def answer(msg: nats.aio.msg.Msg) -> None:
        seen.append(msg.subject)
        await msg.respond(b'{"ok": true, "signature": "s3cret"}')

    await vault.nc.subscribe(server.s("keyvault.sign.*"), queue="keyvault.sign", cb=answer)
    await vault.nc.flush()
    return vault, seen


async def test_only_an_executor_gets_a_signature_and_only_for_its_own_exchange(
    server: Server,
) -> None:
    vault, seen = await _vault_responder(server)
    try:
        for exchange in Exchange:
            probe = await connect_as(server, f"executor-{exchange.value}")
            try:
                reply = await probe.nc.request(server.s(f"keyvault.sign.{exchange.value}"), b"{}")
                assert b"s3cret" in reply.data
                other = next(e for e in Exchange if e is not exchange)
                with pytest.raises(nats.errors.Error):
                    await probe.nc.request(server.s(f"keyvault.sign.{other.value}"), b"{}", 0.5)
                assert ("publish", server.s(f"keyvault.sign.{other.value}")) in (
                    await probe.refused(1)
                )
            finally:
                await probe.nc.close()
        for service in ("signal-gateway", "decision", "ledger"):
            probe = await connect_as(server, service)
            try:
                for exchange in Exchange:
                    with pytest.raises(nats.errors.Error):
                        await probe.nc.request(
                            server.s(f"keyvault.sign.{exchange.value}"), b"", 0.3
                        )
                assert len(await probe.refused(len(Exchange))) == len(Exchange)
            finally:
                await probe.nc.close()
    finally:
        await vault.nc.close()
    assert sorted(seen) == sorted(server.s(f"keyvault.sign.{e.value}") for e in Exchange)


async def test_nobody_else_reads_the_vaults_replies(server: Server) -> None:
    vault, _ = await _vault_responder(server)
    executor = await connect_as(server, "executor-bybit")
    spies = [await connect_as(server, s) for s in SERVICES if s != "executor-bybit"]
    overheard: list[bytes] = []
    try:
        for spy in spies:
            for subject in ("_INBOX.>", f"{inbox_prefix('executor-bybit')}.>", ">"):

                async def keep(msg: nats.aio.msg.Msg) -> None:
                    overheard.append(msg.data)

                await spy.nc.subscribe(subject, cb=keep)
            assert len(await spy.refused(3)) == 3
        reply = await executor.nc.request(server.s("keyvault.sign.bybit"), b"{}")
        assert b"s3cret" in reply.data
        # The vault may answer a request it received, and publish nowhere else.
        await vault.nc.publish(f"{inbox_prefix('executor-bybit')}.forged.1", b"x")
        assert (
            "publish",
            f"{inbox_prefix('executor-bybit')}.forged.1".lower(),
        ) in await vault.refused(1)
        for spy in spies:
            await spy.nc.flush()
        assert overheard == []
    finally:
        for probe in (vault, executor, *spies):
            await probe.nc.close()


async def test_services_connect_with_the_runtime_credentials(server: Server, operator: Bus) -> None:
    """The runtime's own connect path (seed + inbox prefix) works for a granted request."""
    vault, _ = await _vault_responder(server)
    creds = NatsCredentials(
        nkey_seed=server.auth.seed("executor-binance"),
        inbox_prefix=inbox_prefix("executor-binance"),
    )
    bus = await Bus.connect(
        server.url, "executor-binance", BusNamespace(server.prefix), credentials=creds
    )
    try:
        await bus.wait_for_streams(GRANTS["executor-binance"].streams, timeout=5)
        reply = await bus.nc.request(bus.subject("keyvault.sign.binance"), b"{}")
        assert b"s3cret" in reply.data
    finally:
        await bus.close()
        await vault.nc.close()


# ------------------------------------------------------------------------------ deploy/k8s

K8S_AUTH = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "base" / "nats" / "auth.conf"


def test_the_deployed_authorization_is_the_generated_one() -> None:
    assert K8S_AUTH.read_text() == deployment_auth_config(), (
        "regenerate: python -m marketbot.runtime.natsauth deploy-config "
        "> deploy/k8s/base/nats/auth.conf"
    )


async def test_the_deployed_authorization_works_in_nats_server(tmp_path: Path) -> None:
    """deploy/k8s's file, with the keys in the server's environment as the StatefulSet
    gives them: the ledger's key connects and still cannot publish an order request."""
    auth = NatsAuth.generate()
    port = free_port()
    (tmp_path / "auth.conf").write_text(K8S_AUTH.read_text())
    (tmp_path / "nats.conf").write_text(f'listen: "127.0.0.1:{port}"\ninclude auth.conf\n')
    env = {env_name(s): public_key(seed) for s, seed in auth.seeds.items()}
    env["OPERATOR_PASSWORD_BCRYPT"] = auth.operator_password
    process = subprocess.Popen(  # noqa: S603
        [nats_server_binary(), "--config", str(tmp_path / "nats.conf")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 15, process)
        probe = await connect_as(Server(f"nats://127.0.0.1:{port}", auth, ""), "ledger")
        try:
            await probe.nc.publish("orders.requested.bybit.pro", b"{}")
            await probe.nc.publish("ledger.CommissionAccrued", b"{}")
            assert await probe.refused(1) == {("publish", "orders.requested.bybit.pro")}
        finally:
            await probe.nc.close()
        with pytest.raises((nats.errors.Error, NoServersError, OSError)):
            await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
