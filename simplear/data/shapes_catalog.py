"""Vocabulary of the synthetic shapes benchmark: grid, background, object colours and shape cell masks."""

from __future__ import annotations

import numpy as np

from simplear.config import DEFAULT_PALETTE, get_preset

_TINY_VISION = get_preset("tiny").vision

GRID: int = _TINY_VISION.grid
CELL_PX: int = _TINY_VISION.downsample
IMAGE_PX: int = _TINY_VISION.resolution

PALETTE_NAMES: tuple[str, ...] = tuple(color.name for color in DEFAULT_PALETTE)
PALETTE_RGB: np.ndarray = np.array([color.rgb for color in DEFAULT_PALETTE], dtype=np.uint8)
PALETTE_RGB.setflags(write=False)
PALETTE_INDEX: dict[str, int] = {name: index for index, name in enumerate(PALETTE_NAMES)}

BACKGROUND = "white"

# GenEval's colour words that are in the palette, minus the background (white) and brown
# (78 RGB units from orange); every remaining pair is at least 98 RGB units apart.
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "black")


def _mask(rows: str) -> np.ndarray:
    """A read-only boolean cell mask from rows of '#' (object) and '.' (background)."""
    mask = np.array([[char == "#" for char in row] for row in rows.split()], dtype=bool)
    mask.setflags(write=False)
    return mask


SHAPES: dict[str, np.ndarray] = {
    "square": _mask("##### ##### ##### ##### #####"),
    "circle": _mask(".###. ##### ##### ##### .###."),
    "triangle": _mask("...#... ..###.. .#####. #######"),
    "cross": _mask("..#.. ..#.. ##### ..#.. ..#.."),
    "diamond": _mask("..#.. .###. ##### .###. ..#.."),
}
