"""Run every benchmark under bench/ and print one table.

Each ``bench_*.py`` exposes ``async def run() -> list[dict]`` with rows
``{"name", "value", "unit", "baseline", "ratio"}``. One embedded NATS + PostgreSQL is started
for the whole run (or NATS_URL / DATABASE_URL are used) and shared by all benchmarks.

    python bench/run.py [substring ...]   # only the benchmarks whose file name contains one
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from marketbot.runtime.infra import start_infra

HERE = Path(__file__).parent


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ["benchmark", "figure", "unit", "measured against", "ratio"]
    table = [
        [
            r["name"],
            fmt(r["value"]),
            r["unit"],
            r.get("baseline", ""),
            "" if r.get("ratio") is None else f"{r['ratio']:.2f}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in table:
        print(
            "  ".join(
                c.ljust(w) if i in (0, 2, 3) else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    files = sorted(
        p for p in HERE.glob("bench_*.py") if not wanted or any(w in p.stem for w in wanted)
    )
    rows: list[dict[str, Any]] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="marketbot-bench-") as tmp:
        infra = start_infra(Path(tmp), auth_prefix="*")
        os.environ["NATS_URL"] = infra.nats_url
        os.environ["MARKETBOT_NATS_CREDENTIALS"] = str(infra.credentials_path or "")
        os.environ["DATABASE_URL"] = infra.database_url
        try:
            for path in files:
                started = time.monotonic()
                print(f"# {path.stem} ...", file=sys.stderr, flush=True)
                try:
                    rows.extend(asyncio.run(load(path).run()))
                except Exception:
                    failures += 1
                    traceback.print_exc()
                    rows.append(
                        {
                            "name": f"{path.stem}: FAILED",
                            "value": float("nan"),
                            "unit": "",
                            "baseline": "see the traceback above",
                            "ratio": None,
                        }
                    )
                print(
                    f"# {path.stem} done in {time.monotonic() - started:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            infra.stop()
    print()
    print_table(rows)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
