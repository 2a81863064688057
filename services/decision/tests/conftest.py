"""Shared fixtures; the simulator's fixtures are imported (``pytest_plugins`` is root-only)."""

from marketbot.sim.testing import sim, sim_process, sim_reset  # noqa: F401
