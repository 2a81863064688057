"""``marketbot-ledger``: ``serve`` (default), ``rebuild`` (replay into fresh tables and compare
with the live ones by checksum), ``checksum`` (the live projection's checksum)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from marketbot.ledger.adapters.queries import checksums
from marketbot.ledger.app import MIGRATIONS, main_serve
from marketbot.ledger.rebuild import Mode, rebuild
from marketbot.ledger.settings import LedgerSettings
from marketbot.runtime.bus import Bus
from marketbot.runtime.db import create_pool, migrate_service
from marketbot.runtime.logs import configure_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="marketbot-ledger", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the projection and the query API (default)")
    rebuild_cmd = commands.add_parser("rebuild", help="replay the streams into fresh tables")
    rebuild_cmd.add_argument(
        "--schema", default=None, help="target schema (default: <ledger schema>_rebuild)"
    )
    rebuild_cmd.add_argument(
        "--mode",
        choices=("fold", "replay"),
        default="fold",
        help="fold in memory and bulk-load (fast), or apply through the live handlers",
    )
    commands.add_parser("checksum", help="print the live projection's checksums")
    return parser.parse_args(argv)


async def live_checksums(settings: LedgerSettings) -> dict[str, str]:
    pool = await create_pool(settings.database_url, settings.schema_name, max_size=1)
    try:
        await migrate_service(pool, settings.schema_name, "ledger", MIGRATIONS)
        async with pool.acquire() as conn:
            return await checksums(conn)
    finally:
        await pool.close()


async def run_rebuild(settings: LedgerSettings, schema: str | None, mode: Mode) -> int:
    bus = await Bus.connect(
        settings.nats_url,
        "ledger-rebuild",
        settings.namespace,
        credentials=settings.nats_credentials,
    )
    try:
        if settings.provision_streams:
            await bus.provision(settings.stream_replicas)
        result = await rebuild(
            bus,
            settings.database_url,
            schema or f"{settings.schema_name}_rebuild",
            settings.money_rules(),
            mode=mode,
        )
    finally:
        await bus.close()
    live = await live_checksums(settings)
    same = live["all"] == result.checksums["all"]
    report = {
        "schema": result.schema,
        "mode": result.mode,
        "events": result.events,
        "skipped": result.skipped,
        "seconds": round(result.seconds, 3),
        "rebuilt": result.checksums,
        "live": live,
        "identical": same,
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = LedgerSettings()
    if args.command in (None, "serve"):
        main_serve(settings)
        return 0
    configure_logging(settings.service_name, settings.log_level)
    if args.command == "rebuild":
        return asyncio.run(run_rebuild(settings, args.schema, args.mode))
    sys.stdout.write(json.dumps(asyncio.run(live_checksums(settings)), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
