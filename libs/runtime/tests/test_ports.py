"""``free_port``: distinct ports, none in the kernel's ephemeral range."""

from __future__ import annotations

import socket

from marketbot.runtime.infra import free_port


def test_free_port_never_hands_out_a_port_twice_in_one_process() -> None:
    """Each service of a stack asks for its own port before any of them binds one: a port
    handed out twice left the gateway unable to bind, and its readiness check answered by
    another service (a fresh-clone CI failure: "web not ready within 90s")."""
    ports = [free_port() for _ in range(500)]  # without the rule: ~10 repeats expected
    assert len(set(ports)) == len(ports)
    assert all(20_000 <= p < 32_000 for p in ports)


def test_a_port_handed_out_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
