"""The shapes scene: its grid, palette and shape masks, objects placed without touching, painted into an image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in cells, end exclusive: a pixel box divided by the cell size."""

MAX_LAYOUT_TRIES = 10_000
MAX_SPOT_TRIES = 50


@dataclass(frozen=True)
class PlacedShape:
    """One object of an image: its shape, colour and the cell of its mask's top-left corner."""

    shape: str
    color: str
    row: int
    col: int

    @property
    def box(self) -> Box:
        """Bounding box in cells, (x0, y0, x1, y1) with exclusive ends."""
        height, width = SHAPES[self.shape].shape
        return (self.col, self.row, self.col + width, self.row + height)


def boxes_apart(a: Box, b: Box) -> bool:
    """Whether at least one background cell separates the two boxes horizontally or vertically."""
    return a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def place_shapes(
    specs: Sequence[tuple[str, str]],
    rng: np.random.Generator,
    accept: Callable[[tuple[PlacedShape, ...]], bool] | None = None,
) -> tuple[PlacedShape, ...]:
    """Random non-touching positions for (shape, colour) specs, redrawn until `accept` approves the layout."""
    for _ in range(MAX_LAYOUT_TRIES):
        layout = _try_layout(specs, rng)
        if layout is not None and (accept is None or accept(layout)):
            return layout
    raise RuntimeError(f"no layout of {list(specs)} found in {MAX_LAYOUT_TRIES} tries")


def _try_layout(specs: Sequence[tuple[str, str]], rng: np.random.Generator) -> tuple[PlacedShape, ...] | None:
    """One attempt at placing every spec, or None when some shape finds no free spot."""
    placed: list[PlacedShape] = []
    for shape, color in specs:
        height, width = SHAPES[shape].shape
        for _ in range(MAX_SPOT_TRIES):
            row, col = int(rng.integers(0, GRID - height + 1)), int(rng.integers(0, GRID - width + 1))
            candidate = PlacedShape(shape, color, row, col)
            if all(boxes_apart(candidate.box, other.box) for other in placed):
                placed.append(candidate)
                break
        else:
            return None
    return tuple(placed)


def render_cells(objects: Sequence[PlacedShape]) -> np.ndarray:
    """The GRID x GRID array of palette indices: background everywhere except the objects' masks."""
    cells = np.full((GRID, GRID), PALETTE_INDEX[BACKGROUND], dtype=np.int64)
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        if x0 < 0 or y0 < 0 or x1 > GRID or y1 > GRID:
            raise ValueError(f"{obj} does not fit in the {GRID}x{GRID} grid")
        window = cells[y0:y1, x0:x1]
        window[SHAPES[obj.shape]] = PALETTE_INDEX[obj.color]
    return cells


def cells_to_image(cells: np.ndarray) -> np.ndarray:
    """An RGB uint8 image with every cell painted as a flat CELL_PX x CELL_PX block of its palette colour."""
    pixels = PALETTE_RGB[cells]
    return np.repeat(np.repeat(pixels, CELL_PX, axis=0), CELL_PX, axis=1)


def render_image(objects: Sequence[PlacedShape]) -> np.ndarray:
    """The IMAGE_PX x IMAGE_PX x 3 uint8 image of the objects on the background."""
    return cells_to_image(render_cells(objects))
