"""Fixtures of the deploy tests: rendered overlays, the services' settings and metrics.

The helper modules beside this file (deploy_*.py) are put on sys.path here: the repository
runs pytest with --import-mode=importlib, where test files cannot import their neighbours.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import deploy_kustomize  # noqa: E402


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Every overlay (and the base) built by the offline renderer."""
    return {
        name: deploy_kustomize.build(path)
        for name, path in {
            "base": K8S / "base",
            "dev": K8S / "overlays" / "dev",
            "prod": K8S / "overlays" / "prod",
        }.items()
    }
