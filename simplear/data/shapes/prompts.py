"""The shapes benchmark in words: every GenEval-schema prompt per task family, and long scene captions."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cache
from itertools import permutations
from typing import Any

from simplear.data.shapes.scene import BACKGROUND, COLORS, GRID, SHAPES, PlacedShape

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
POSITIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
COUNTS: tuple[int, ...] = (2, 3, 4)
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

Metadata = dict[str, Any]


def with_article(word: str) -> str:
    """`word` behind "a" or "an", as GenEval picks it."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def plural(noun: str) -> str:
    """GenEval's plural: "es" after a final s, else "s"."""
    return f"{noun}es" if noun.endswith("s") else f"{noun}s"


def _single_object() -> list[Metadata]:
    """One prompt per shape: "a photo of a circle"."""
    return [
        {
            "tag": "single_object",
            "include": [{"class": shape, "count": 1}],
            "prompt": f"a photo of {with_article(shape)}",
        }
        for shape in SHAPES
    ]


def _two_object() -> list[Metadata]:
    """One prompt per ordered pair of different shapes: "a photo of a circle and a cross"."""
    return [
        {
            "tag": "two_object",
            "include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
            "prompt": f"a photo of {with_article(a)} and {with_article(b)}",
        }
        for a, b in permutations(SHAPES, 2)
    ]


def _counting() -> list[Metadata]:
    """One prompt per shape and count: "a photo of three squares", excluding count + 1."""
    return [
        {
            "tag": "counting",
            "include": [{"class": shape, "count": count}],
            "exclude": [{"class": shape, "count": count + 1}],
            "prompt": f"a photo of {NUMBER_WORDS[count]} {plural(shape)}",
        }
        for shape in SHAPES
        for count in COUNTS
    ]


def _colors() -> list[Metadata]:
    """One prompt per shape and colour: "a photo of a red circle"."""
    return [
        {
            "tag": "colors",
            "include": [{"class": shape, "count": 1, "color": color}],
            "prompt": f"a photo of {with_article(color)} {shape}",
        }
        for shape in SHAPES
        for color in COLORS
    ]


def _position() -> list[Metadata]:
    """One prompt per ordered shape pair and relation: "a photo of a cross left of a circle"."""
    return [
        {
            "tag": "position",
            "include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [relation, 0]}],
            "prompt": f"a photo of {with_article(a)} {relation} {with_article(b)}",
        }
        for a, b in permutations(SHAPES, 2)
        for relation in POSITIONS
    ]


def _color_attr() -> list[Metadata]:
    """One prompt per ordered shape pair and ordered colour pair: "a photo of a red circle and a blue cross"."""
    return [
        {
            "tag": "color_attr",
            "include": [{"class": a, "count": 1, "color": color_a}, {"class": b, "count": 1, "color": color_b}],
            "prompt": f"a photo of {with_article(color_a)} {a} and {with_article(color_b)} {b}",
        }
        for a, b in permutations(SHAPES, 2)
        for color_a, color_b in permutations(COLORS, 2)
    ]


_BUILDERS = {
    "single_object": _single_object,
    "two_object": _two_object,
    "counting": _counting,
    "colors": _colors,
    "position": _position,
    "color_attr": _color_attr,
}


@cache
def _space(tag: str) -> tuple[Metadata, ...]:
    """The cached prompt space of one tag."""
    if tag not in _BUILDERS:
        raise ValueError(f"unknown tag {tag!r}; known tags: {', '.join(TAGS)}")
    return tuple(_BUILDERS[tag]())


def prompt_space_size(tag: str) -> int:
    """How many distinct prompts the tag has."""
    return len(_space(tag))


def prompt_metadata(tag: str, index: int) -> Metadata:
    """A fresh copy of the tag's `index`-th prompt metadata, in GenEval's schema."""
    return copy.deepcopy(_space(tag)[index])


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
