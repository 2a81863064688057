"""``marketbot-keyvault``: serve (default), rotate, generate-master-key, generate-sealing-key,
public-key."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys

from marketbot.keyvault.adapters.keysource import (
    KeyMaterialError,
    SealingKey,
    load_keyring,
    load_sealing_key,
)
from marketbot.keyvault.domain.masterkeys import format_master_key, generate_master_key
from marketbot.keyvault.settings import KeyvaultSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketbot-keyvault", description="The marketbot key vault."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the vault (the default)")
    rotate = commands.add_parser(
        "rotate", help="re-wrap every data key under the newest master key"
    )
    rotate.add_argument("--batch", type=int, default=500)
    master = commands.add_parser(
        "generate-master-key", help="print a new random 256-bit master key as VERSION:BASE64"
    )
    master.add_argument("--version", type=int, default=1, dest="key_version")
    commands.add_parser(
        "generate-sealing-key",
        help="print a new X25519 sealing private key (base64); its public key goes to stderr",
    )
    commands.add_parser(
        "public-key",
        help="print the configured sealing key's public half (base64) for the gateway's "
        "MARKETBOT_GATEWAY_VAULT_PUBLIC_KEY",
    )
    return parser


async def _rotate(settings: KeyvaultSettings, batch: int) -> int:
    from marketbot.keyvault.app import MIGRATIONS
    from marketbot.keyvault.rotation import rotate
    from marketbot.runtime.clock import SystemClock
    from marketbot.runtime.db import create_pool, migrate_service
    from marketbot.runtime.logs import configure_logging

    configure_logging(settings.service_name, settings.log_level)
    keyring = load_keyring(settings)
    pool = await create_pool(settings.database_url, settings.schema_name)
    try:
        await migrate_service(pool, settings.schema_name, settings.service_name, MIGRATIONS)
        report = await rotate(pool, keyring, SystemClock(), batch=batch)
    finally:
        await pool.close()
    print(
        json.dumps(
            {
                "target_version": report.target_version,
                "rewrapped": report.rewrapped,
                "failed": report.failed,
                "rows_by_version": {str(k): v for k, v in report.by_version_after.items()},
            }
        )
    )
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "generate-master-key":
            if args.key_version < 1:
                print("--version must be >= 1", file=sys.stderr)
                return 2
            print(format_master_key(args.key_version, generate_master_key()))
            return 0
        if command == "generate-sealing-key":
            key = SealingKey.generate()
            print(key.private_b64())
            print(f"key id: {key.key_id}", file=sys.stderr)
            return 0
        settings = KeyvaultSettings()
        if command == "public-key":
            sealing = load_sealing_key(settings)
            print(base64.b64encode(sealing.public).decode())
            print(f"key id: {sealing.key_id}", file=sys.stderr)
            return 0
        if command == "rotate":
            return asyncio.run(_rotate(settings, args.batch))
        from marketbot.keyvault.app import serve

        serve(settings)
        return 0
    except KeyMaterialError as exc:
        print(f"marketbot-keyvault: {exc}", file=sys.stderr)
        return 2
