"""How every benchmark ends: optionally write its summary as a JSON file, then print it as the last line."""

from __future__ import annotations

import json
from pathlib import Path


def emit(summary: dict, out: str | None) -> None:
    """Write `summary` to `out` (if given) and print it as one JSON line."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
