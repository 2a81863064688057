"""Write the JSON Schema of every message: ``python -m marketbot.contracts.schema [DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from marketbot.contracts.registry import MESSAGE_TYPES


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, cls in sorted(MESSAGE_TYPES.items()):
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"marketbot/{name}/v{cls.VERSION}"
        schema["x-subject"] = getattr(cls, "SUBJECT", "") or None
        path = directory / f"{name}.v{cls.VERSION}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else Path("docs/schemas")
    for path in write_schemas(target):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
