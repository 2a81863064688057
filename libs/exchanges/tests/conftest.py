"""The exchange simulator's session fixtures (``sim``, ``sim_reset``) for the contract suite.

``pytest_plugins`` is not allowed in a non-root conftest, so the fixtures are imported.
"""

from marketbot.sim.testing import sim, sim_process, sim_reset  # noqa: F401
