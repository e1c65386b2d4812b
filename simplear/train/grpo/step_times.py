"""Seconds spent in rollouts and in rewards since the last metrics row, shared by the pieces that measure them."""

from __future__ import annotations

from collections import defaultdict


class StepTimes:
    """Accumulates seconds by kind (`rollout`, `reward`) until the metrics callback takes them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, kind: str, seconds: float) -> None:
        """Count `seconds` more of `kind`."""
        self.seconds[kind] += seconds

    def take(self) -> dict[str, float]:
        """The totals so far, starting again from zero."""
        totals, self.seconds = dict(self.seconds), defaultdict(float)
        return totals
