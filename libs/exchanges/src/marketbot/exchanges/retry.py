"""Exponential backoff with full jitter, for reads and ``Retryable`` errors only."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    max_rate_limit_wait_s: float = 5.0
    """A ``RateLimited`` asking for a longer wait than this is returned to the caller."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based): uniform in [0, min(cap, base*2^n)]."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return rng.uniform(0.0, ceiling)
