"""Long captions that name every object of a shapes image, its colour and where it lies."""

from __future__ import annotations

from collections.abc import Sequence

from simplear.data.shapes_catalog import BACKGROUND, GRID
from simplear.data.shapes_prompts import NUMBER_WORDS, with_article
from simplear.data.shapes_render import PlacedShape

_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "center", "right")
_PLACES = {
    ("top", "left"): "in the top left corner",
    ("top", "center"): "at the top",
    ("top", "right"): "in the top right corner",
    ("middle", "left"): "on the left",
    ("middle", "center"): "in the center",
    ("middle", "right"): "on the right",
    ("bottom", "left"): "in the bottom left corner",
    ("bottom", "center"): "at the bottom",
    ("bottom", "right"): "in the bottom right corner",
}


def _third(center: float, names: tuple[str, str, str]) -> str:
    """Which third of the grid a centre coordinate (in cells) falls in."""
    return names[min(int(3 * center / GRID), 2)]


def _zone(obj: PlacedShape) -> tuple[str, str]:
    """The (vertical, horizontal) third of the grid that holds the object's box centre."""
    x0, y0, x1, y1 = obj.box
    return _third((y0 + y1) / 2, _ROWS), _third((x0 + x1) / 2, _COLUMNS)


def place_phrase(obj: PlacedShape) -> str:
    """Where the object's box centre lies, as one of nine phrases ("in the top left corner", "in the center")."""
    return _PLACES[_zone(obj)]


def _reading_order(obj: PlacedShape) -> tuple[int, int, int, int]:
    """Sort key: zone row, zone column, then box centre (doubled, to stay integral) top to bottom, left to right."""
    vertical, horizontal = _zone(obj)
    x0, y0, x1, y1 = obj.box
    return _ROWS.index(vertical), _COLUMNS.index(horizontal), y0 + y1, x0 + x1


def long_caption(objects: Sequence[PlacedShape]) -> str:
    """Every object with its colour and place, in reading order of their zones, on the background."""
    ordered = sorted(objects, key=_reading_order)
    parts = [f"{with_article(obj.color)} {obj.shape} {place_phrase(obj)}" for obj in ordered]
    if len(parts) == 1:
        return f"{with_article(BACKGROUND)} background with {parts[0]}"
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return f"{with_article(BACKGROUND)} background with {NUMBER_WORDS[len(parts)]} objects: {listed}"
