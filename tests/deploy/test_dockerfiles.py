"""One Dockerfile per service: multi-stage, uv from the lock, non-root, the service's script.

No container engine runs here, so the Dockerfiles are read, not built."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import deploy_services
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = deploy_services.services()


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    lines: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        lines.append(buffer + line)
        buffer = ""
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert match, line
            stages.append(Stage(match.group(1), match.group(2) or ""))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def test_every_service_has_a_dockerfile() -> None:
    missing = [name for name, svc in SERVICES.items() if not (svc.path / "Dockerfile").exists()]
    assert not missing


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dockerfile(name: str) -> None:
    service = SERVICES[name]
    stages = parse((service.path / "Dockerfile").read_text())
    assert len(stages) >= 2, "multi-stage"
    builder, runtime = stages[0], stages[-1]
    assert builder.name
    assert runtime.name
    run = " ".join(builder.all("RUN"))
    assert re.search(r"\buv\b", run)
    assert re.search(r"uv sync\b.*--frozen", run)
    assert "--no-dev" in run
    assert f"--package {service.package}" in run
    copies = " ".join(builder.all("COPY"))
    assert "uv.lock" in copies
    assert "pyproject.toml" in copies
    # the runtime stage takes only the built venv, and runs as a non-root user
    runtime_copies = runtime.all("COPY")
    assert runtime_copies
    assert all(c.startswith(f"--from={builder.name}") for c in runtime_copies)
    assert not re.search(r"\buv\b", " ".join(runtime.all("RUN")))
    users = runtime.all("USER")
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric USER lets Kubernetes verify runAsNonRoot"
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint)[0] == service.script


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_user_matches_the_pod_security_context(name: str) -> None:
    stages = parse((SERVICES[name].path / "Dockerfile").read_text())
    uid = stages[-1].all("USER")[-1].split(":")[0]
    manifests = ROOT / "deploy" / "k8s"
    deployment = next(manifests.rglob(f"{name}/deployment.yaml"))
    assert f"runAsUser: {uid}" in deployment.read_text()
