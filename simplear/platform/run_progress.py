"""Where a stage run stands, from its log: the main progress bar (step of total, ETA) and the last loss or reward."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

BAR = re.compile(r"(?P<desc>[^|]*?):?\s*\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\s*"
                 r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)")
METRIC = re.compile(r"""['"](?P<name>loss|reward)['"]:\s*['"]?(?P<value>-?[\d.]+(?:e-?\d+)?)""")
LOG_TAIL_LINES = 200
"""Lines at the end of a log that `simplear jobs describe` reads the progress from."""
SIDE_BARS = ("Writing", "Loading", "Fetching", "Saving")
"""Progress bars of loading and saving, not of the stage's own work."""


@dataclass(frozen=True)
class RunProgress:
    """A run's main progress bar and its latest training metric."""

    done: int = 0
    total: int = 0
    eta: str = ""
    metric: str = ""
    value: float | None = None

    def update(self, line: str) -> RunProgress:
        """This progress after one more log line."""
        if (bar := BAR.search(line)) and not bar["desc"].strip().startswith(SIDE_BARS) and int(bar["total"]) > 1:
            return replace(self, done=int(bar["done"]), total=int(bar["total"]), eta=bar["eta"])
        if metric := METRIC.search(line):
            return replace(self, metric=metric["name"], value=float(metric["value"]))
        return self

    def describe(self) -> str:
        """`120/600 (20%), loss 2.310, ETA 06:20`; empty before the first bar or metric."""
        parts = []
        if self.total:
            parts.append(f"{self.done}/{self.total} ({100 * self.done // self.total}%)")
        if self.value is not None:
            parts.append(f"{self.metric} {self.value:.3f}")
        if self.total and self.eta and self.eta != "?" and self.done < self.total:
            parts.append(f"ETA {self.eta}")
        return ", ".join(parts)


def progress_of(lines: Iterable[str]) -> RunProgress:
    """The progress a whole log shows."""
    progress = RunProgress()
    for line in lines:
        progress = progress.update(line)
    return progress
