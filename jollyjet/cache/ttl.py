"""TTL policy: jitter, so keys written together do not expire together."""

from __future__ import annotations

import random


class TtlPolicy:
    """Returns TTLs spread uniformly within ±jitter of the base value."""

    def __init__(self, jitter: float, rng: random.Random | None = None) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.jitter = jitter
        self._rng = rng or random.Random()

    def seconds(self, base_s: int) -> int:
        """A TTL in whole seconds near base_s (never below 1)."""
        spread = base_s * self.jitter
        return max(1, round(base_s + self._rng.uniform(-spread, spread)))
