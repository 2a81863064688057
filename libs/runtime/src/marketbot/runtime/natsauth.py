"""NATS authentication and authorization generated from the permission map.

Every service connects as its own nkey user (an Ed25519 key pair: the server holds the
public key, the service its seed, ``NATS_NKEY_SEED``), as the NATS docs describe
("Authentication > NKeys"). Its permissions come from ``marketbot.contracts.access``:

- publish: its event subjects, the request subjects it may ask, the JetStream API calls for
  its own consumers (create, info, next message, ack), stream info for what it reads and
  message get on the streams it reads by sequence;
- subscribe: the subjects it serves or listens to, the max-deliveries advisories of its own
  consumers, and its own inbox prefix
  (``_INBOX_<service>.>``), so nobody else can read the replies it is sent;
- ``allow_responses``: a service that serves requests may publish one reply to the reply
  subject of each request it received, and nowhere else.

The operator identity (user and password) can do everything: it provisions the streams
and runs tooling and the test harness. It is never given to a service.

``render_server_config`` writes the ``authorization`` block. For a namespace with a prefix
the subjects are prefixed exactly; ``ANY_PREFIX`` renders the form the shared test server
uses, where each test has its own prefix: subjects take a ``*`` first token and, because a
stream or consumer name cannot be matched partly (``t1_SIGNALS``), the stream and consumer
tokens of JetStream API subjects are ``*``. The exact (production) form is what
``tests/test_nats_auth.py``-style tests run against a dedicated server.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys

from marketbot.contracts import BusNamespace
from marketbot.contracts.access import GRANTS, OPERATOR, SERVICES, Grant, inbox_prefix

ANY_PREFIX = "*"
"""Render permissions for any single-token bus prefix (a shared test server)."""

_JS = "$JS.API"
_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
CREDENTIALS_ENV = "MARKETBOT_NATS_CREDENTIALS"
"""Path of a saved ``NatsAuth`` (``credentials.json``), for tools started beside an
embedded server (the benchmarks)."""


def service_env(
    nats_url: str, service: str, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment that connects ``service`` as itself: the bare URL and its seed, read
    from the saved credentials (``CREDENTIALS_ENV``); without them, ``nats_url`` as given."""
    source = os.environ if environ is None else environ
    path = source.get(CREDENTIALS_ENV)
    if not path:
        return {"NATS_URL": nats_url}
    seed = NatsAuth.load(Path(path)).seed(service)
    return {"NATS_URL": strip_userinfo(nats_url), "NATS_NKEY_SEED": seed}


def strip_userinfo(url: str) -> str:
    """``nats://user:pass@host:port`` -> ``nats://host:port``."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


@dataclass(frozen=True)
class _Names:
    prefix: str

    def subject(self, subject: str) -> str:
        if self.prefix == ANY_PREFIX:
            return f"*.{subject}"
        return BusNamespace(self.prefix).subject(subject)

    def stream(self, name: str) -> str:
        return "*" if self.prefix == ANY_PREFIX else BusNamespace(self.prefix).stream(name)

    def consumer(self, name: str) -> str:
        return "*" if self.prefix == ANY_PREFIX else BusNamespace(self.prefix).durable(name)


def permissions(grant: Grant, service: str, prefix: str = "") -> dict[str, Any]:
    """nats-server ``permissions`` for one service in the namespace ``prefix``."""
    names = _Names(prefix)
    publish: list[str] = [names.subject(s) for s in (*grant.publishes, *grant.asks)]
    for stream in grant.streams:
        publish.append(f"{_JS}.STREAM.INFO.{names.stream(stream)}")
    for stream in grant.reads:
        publish.append(f"{_JS}.STREAM.MSG.GET.{names.stream(stream)}")
    advisories: list[str] = []
    for durable in (*grant.durables, *grant.extra_consumers):
        stream, consumer = names.stream(durable.stream), names.consumer(durable.name)
        publish += [
            f"{_JS}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
            f"{_JS}.CONSUMER.CREATE.{stream}.{consumer}",
            f"{_JS}.CONSUMER.CREATE.{stream}.{consumer}.>",
            f"{_JS}.CONSUMER.INFO.{stream}.{consumer}",
            f"{_JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>",
        ]
        if grant.deletes_own_consumers or durable in grant.extra_consumers:
            publish.append(f"{_JS}.CONSUMER.DELETE.{stream}.{consumer}")
        # The message loop hears when JetStream stops redelivering one of its messages.
        advisories.append(f"{_MAX_DELIVERIES}.{stream}.{consumer}")
    for stream in grant.follows:
        # An ephemeral push consumer (no name in the subject) delivering to its own inbox;
        # flow-control replies go to $JS.FC.
        publish += [
            f"{_JS}.CONSUMER.CREATE.{names.stream(stream)}",
            f"$JS.FC.{names.stream(stream)}.>",
        ]
    subscribe = [names.subject(s) for s in (*grant.serves, *grant.listens)]
    subscribe += advisories
    subscribe.append(f"{inbox_prefix(service)}.>")
    result: dict[str, Any] = {
        "publish": {"allow": list(dict.fromkeys(publish))},
        "subscribe": {"allow": list(dict.fromkeys(subscribe))},
    }
    if grant.serves:
        result["allow_responses"] = {"max": 1, "expires": "2m"}
    return result


def new_user_seed() -> str:
    """A fresh nkey user seed (``SU...``)."""
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()  # type: ignore[no-any-return]


def public_key(seed: str) -> str:
    """The public nkey (``U...``) of a user seed."""
    return nkeys.from_seed(seed.encode()).public_key.decode()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class NatsAuth:
    """One deployment's identities: a seed per service and the operator's password."""

    seeds: dict[str, str]
    operator_password: str
    operator_user: str = OPERATOR

    @classmethod
    def generate(cls) -> NatsAuth:
        return cls(
            seeds={service: new_user_seed() for service in SERVICES},
            operator_password=secrets.token_urlsafe(24),
        )

    def seed(self, service: str) -> str:
        return self.seeds[service]

    def operator_url(self, url: str) -> str:
        """``url`` with the operator's user and password in it (for the harness and tools)."""
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}{self.operator_user}:{self.operator_password}@{rest}"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        data = {"seeds": self.seeds, "operator_password": self.operator_password}
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> NatsAuth:
        data = json.loads(path.read_text())
        return cls(seeds=dict(data["seeds"]), operator_password=str(data["operator_password"]))


@dataclass(frozen=True)
class UserEntry:
    """One ``users`` entry: an nkey (or a config variable holding one) and its service."""

    service: str
    nkey: str
    """A public nkey, or ``$VARIABLE`` resolved by nats-server from its environment."""


@dataclass(frozen=True)
class ServerAuthConfig:
    users: tuple[UserEntry, ...]
    operator_password: str
    """A password, a bcrypt hash, or ``$VARIABLE``."""
    prefix: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        entries: list[dict[str, Any]] = [
            {"user": OPERATOR, "password": self.operator_password},
        ]
        for user in self.users:
            entries.append(
                {
                    "nkey": user.nkey,
                    "permissions": permissions(GRANTS[user.service], user.service, self.prefix),
                }
            )
        lines = [
            "# Generated by marketbot.runtime.natsauth from marketbot.contracts.access.",
            "# Do not edit: regenerate with `python -m marketbot.runtime.natsauth`.",
            "authorization {",
            "  users = [",
        ]
        for entry in entries:
            lines.append("    " + _render_value(entry, 4))
        lines += ["  ]", "}", ""]
        return "\n".join(lines)


def _render_value(value: Any, indent: int) -> str:
    """NATS configuration syntax; ``$NAME`` stays a bare variable reference."""
    pad = " " * indent
    if isinstance(value, dict):
        inner = [f"{pad}  {key}: {_render_value(item, indent + 2)}" for key, item in value.items()]
        return "{\n" + "\n".join(inner) + f"\n{pad}}}"
    if isinstance(value, list):
        return "[" + ", ".join(_render_value(item, indent) for item in value) + "]"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.startswith("$") and text[1:].replace("_", "").isalnum() and text[1:].isupper():
        return text  # a variable the server resolves from its environment
    return json.dumps(text)


def server_auth(auth: NatsAuth, prefix: str = "") -> ServerAuthConfig:
    users = tuple(UserEntry(service, public_key(seed)) for service, seed in auth.seeds.items())
    return ServerAuthConfig(users=users, operator_password=auth.operator_password, prefix=prefix)


def env_name(service: str) -> str:
    """The nats-server environment variable that carries ``service``'s public nkey (k8s)."""
    return "NKEY_" + service.replace("-", "_").upper()


def deployment_auth_config() -> str:
    """The ``authorization`` block of deploy/k8s: keys come from the server's environment."""
    users = tuple(UserEntry(service, f"${env_name(service)}") for service in SERVICES)
    variable = "$OPERATOR_PASSWORD_BCRYPT"
    return ServerAuthConfig(users=users, operator_password=variable).render()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="NATS identities from the permission map")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("deploy-config", help="print deploy/k8s/base/nats/auth.conf")
    keys = sub.add_parser("keys", help="print a fresh seed and public key for each service")
    keys.add_argument("--service", choices=SERVICES, action="append")
    args = parser.parse_args(argv)
    if args.command == "deploy-config":
        print(deployment_auth_config(), end="")
        return 0
    for service in args.service or SERVICES:
        seed = new_user_seed()
        print(f"{service}\t{public_key(seed)}\t{seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
