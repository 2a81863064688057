"""Who may do what on the bus: the one permission map every NATS configuration comes from.

Each service has one identity (an nkey user) and a ``Grant`` that follows the event flow:

- only the gateway publishes signals (and account events);
- only decision publishes order requests;
- only an executor asks for a signature, and only on its own exchange's subject
  (``keyvault.sign.<exchange>``, or several at once on ``keyvault.signbatch.<exchange>``;
  the vault checks the body names the same exchange);
- the vault answers only the requests it received (``allow_responses``), and every reply goes
  to the asker's own inbox prefix (``_INBOX_<service>``), which nobody else may subscribe to;
- the ledger and the gateway read only the streams they project;
- every consumer dead-letters only under its own name (``deadletters.<consumer>``, the
  DEAD_LETTERS stream), hears the max-deliveries advisory of its own consumers only, and
  reads a stored message by sequence only on the streams it consumes (to copy it there);
- the gateway's admin API reads SIGNALS and DEAD_LETTERS by sequence, and replays a dead
  letter only onto a subject the gateway itself may publish (never an order request).

``marketbot.runtime.natsauth`` turns a grant into nats-server ``permissions`` for a bus
namespace, and renders the server configuration used by ``make run``, the tests and
deploy/k8s. Subjects, stream names and durable names here are logical (unprefixed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from marketbot.contracts.enums import Exchange, Plan

SIGN_SUBJECT = "keyvault.sign"
SIGN_BATCH_SUBJECT = "keyvault.signbatch"
INVALIDATE_SUBJECT = "keyvault.internal.invalidate"
DEAD_LETTERS_STREAM = "DEAD_LETTERS"
LEDGER_REBUILD_CONSUMER = "ledger_rebuild"
"""The ledger rebuild's consumer name (one rebuild at a time): it must be exact, because a
wildcard consumer token would let the ledger fetch (and ack) other services' messages."""

KEYVAULT_ORDER_REQUESTS = "keyvault-order-requests"
"""The vault's durable on ORDER_REQUESTS: an order is signed only within its request."""

OPERATOR = "operator"
"""The operator's identity: provisions the streams, runs tooling and the test harness."""


def sign_subject(exchange: Exchange) -> str:
    """Where an executor asks for a signature for ``exchange``."""
    return f"{SIGN_SUBJECT}.{exchange.value}"


def sign_batch_subject(exchange: Exchange) -> str:
    """Where an executor asks for several signatures for ``exchange`` at once."""
    return f"{SIGN_BATCH_SUBJECT}.{exchange.value}"


def inbox_prefix(service: str) -> str:
    """A service's own reply inbox prefix; only that service may subscribe under it."""
    return "_INBOX_" + service.replace("-", "_")


def executor_durable(exchange: Exchange, plan: Plan) -> str:
    return f"executor-{exchange.value}-{plan.value.lower()}"


def dead_letter_subject(consumer: str) -> str:
    """Where the message loop of ``consumer`` dead-letters (``MessageDeadLettered``)."""
    return f"deadletters.{consumer}"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or part not in ("*", have[index]):
            return False
    return len(want) == len(have)


@dataclass(frozen=True)
class Durable:
    """A durable pull consumer a service owns on a stream."""

    stream: str
    name: str


@dataclass(frozen=True)
class Grant:
    """What one service may do. Everything not listed is refused by the server."""

    publishes: tuple[str, ...] = ()
    """Event subjects it may publish (JetStream publishes are plain publishes)."""
    writes: tuple[str, ...] = ()
    """The streams those subjects land in (it may read their info, to wait for them)."""
    asks: tuple[str, ...] = ()
    """Request subjects it may send requests to."""
    serves: tuple[str, ...] = ()
    """Request subjects it answers (queue subscription); it may reply only to those askers."""
    listens: tuple[str, ...] = ()
    """Plain subjects it subscribes to (no reply)."""
    durables: tuple[Durable, ...] = ()
    """Durable pull consumers it creates, reads and acknowledges."""
    follows: tuple[str, ...] = ()
    """Streams it reads with ephemeral, unacknowledged push consumers (live push)."""
    reads: tuple[str, ...] = ()
    """Streams it reads single stored messages from, by sequence (``STREAM.MSG.GET``)."""
    deletes_own_consumers: bool = False
    """It may delete its own durables (decision rebuilds its projection)."""
    extra_consumers: tuple[Durable, ...] = field(default=())
    """Named, non-durable consumers (the ledger rebuild), same rights as a durable."""

    @property
    def streams(self) -> tuple[str, ...]:
        """Every stream it reads (for stream info)."""
        names = [d.stream for d in (*self.durables, *self.extra_consumers)]
        names += [*self.follows, *self.writes, *self.reads]
        return tuple(dict.fromkeys(names))

    def may_publish(self, subject: str) -> bool:
        """Whether an event subject (logical) is one this service may publish."""
        return any(subject_matches(pattern, subject) for pattern in self.publishes)


def _consumes(grant: Grant) -> Grant:
    """What the runtime's message loop needs for each durable a service owns: dead-letter
    under the durable's own name, and read the durable's stream by sequence (a message
    JetStream stopped redelivering is copied to DEAD_LETTERS from the stream)."""
    if not grant.durables:
        return grant
    letters = tuple(dead_letter_subject(d.name) for d in grant.durables)
    return dataclasses.replace(
        grant,
        publishes=(*grant.publishes, *letters),
        writes=(*grant.writes, DEAD_LETTERS_STREAM),
        reads=(*grant.reads, *dict.fromkeys(d.stream for d in grant.durables)),
    )


_LEDGER_DURABLES = (
    Durable("ACCOUNTS", "ledger_accounts"),
    Durable("SIGNALS", "ledger_signals"),
    Durable("DECISIONS", "ledger_decisions"),
    Durable("ORDER_REQUESTS", "ledger_order_requests"),
    Durable("ORDER_EVENTS", "ledger_order_events"),
)


def _executor(exchange: Exchange) -> Grant:
    return _consumes(
        Grant(
            publishes=(f"orders.{exchange.value}.>",),
            writes=("ORDER_EVENTS",),
            asks=(sign_subject(exchange), sign_batch_subject(exchange)),
            durables=tuple(
                Durable("ORDER_REQUESTS", executor_durable(exchange, plan))
                for plan in (Plan.PRO, Plan.FLEX, Plan.TRIAL)
            ),
        )
    )


GRANTS: dict[str, Grant] = {
    "signal-gateway": Grant(
        publishes=("signals.received", "accounts.>"),
        writes=("SIGNALS", "ACCOUNTS"),
        asks=(
            "keyvault.public_key",
            "keyvault.register",
            "keyvault.verify",
            "keyvault.revoke",
            "keyvault.status",
            "ledger.query.operations",
            "ledger.query.statement",
            "ledger.query.commissions",
            "ledger.query.trace",
        ),
        follows=("ORDER_EVENTS", "LEDGER"),
        # the admin API: recent signals, and the dead letters (list, inspect, replay)
        reads=("SIGNALS", DEAD_LETTERS_STREAM),
    ),
    "decision": _consumes(
        Grant(
            publishes=("decisions.made", "orders.requested.>"),
            writes=("DECISIONS", "ORDER_REQUESTS"),
            durables=(
                Durable("SIGNALS", "decision-signals"),
                Durable("DECISIONS", "decision-fanout"),
                Durable("ACCOUNTS", "decision-accounts"),
                Durable("KEYS", "decision-keys"),
            ),
            deletes_own_consumers=True,
        )
    ),
    **{f"executor-{exchange.value}": _executor(exchange) for exchange in Exchange},
    "keyvault": _consumes(
        Grant(
            publishes=("keys.>", INVALIDATE_SUBJECT),
            writes=("KEYS",),
            serves=(
                "keyvault.public_key",
                "keyvault.register",
                "keyvault.verify",
                "keyvault.revoke",
                "keyvault.status",
                f"{SIGN_SUBJECT}.*",  # one queue subscription for every exchange's subject
                f"{SIGN_BATCH_SUBJECT}.*",
            ),
            listens=(INVALIDATE_SUBJECT,),
            # the order requests it bounds order signatures by (issue 14)
            durables=(Durable("ORDER_REQUESTS", KEYVAULT_ORDER_REQUESTS),),
        )
    ),
    "ledger": _consumes(
        Grant(
            publishes=("ledger.CommissionAccrued", "ledger.OperationStatusChanged"),
            writes=("LEDGER",),
            serves=(
                "ledger.query.operations",
                "ledger.query.statement",
                "ledger.query.commissions",
                "ledger.query.trace",
            ),
            durables=_LEDGER_DURABLES,
            extra_consumers=tuple(
                Durable(d.stream, LEDGER_REBUILD_CONSUMER) for d in _LEDGER_DURABLES
            ),
        )
    ),
}
"""The services' grants, by service name (``ServiceSettings.service_name``)."""

SERVICES: tuple[str, ...] = tuple(GRANTS)
