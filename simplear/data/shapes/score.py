"""Exact GenEval-style scoring of shapes images: detected one-colour regions judged by GenEval's clause rules."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from simplear.data.shapes.scene import BACKGROUND, GRID, PALETTE_INDEX, PALETTE_NAMES, PALETTE_RGB, SHAPES, Box

MIN_SHAPE_IOU = 0.7
"""A region whose best template overlap (intersection over union) is lower is no shape at all."""


@dataclass(frozen=True)
class DetectedObject:
    """One connected region of one colour: its best-matching shape (None if none fits), colour and box."""

    shape: str | None
    color: str
    box: Box
    cells: int
    confidence: float


def image_to_cells(image: Image.Image | np.ndarray) -> np.ndarray:
    """GRID x GRID palette indices: each cell's mean colour snapped to the nearest palette colour."""
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got an array of shape {pixels.shape}")
    height, width = pixels.shape[:2]
    if height % GRID or width % GRID:
        raise ValueError(f"image size {width}x{height} is not a multiple of the {GRID}x{GRID} grid")
    means = pixels.reshape(GRID, height // GRID, GRID, width // GRID, 3).astype(np.float64).mean(axis=(1, 3))
    distances = ((means[:, :, None, :] - PALETTE_RGB.astype(np.float64)) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1)


def best_overlap(mask: np.ndarray, template: np.ndarray) -> float:
    """The highest intersection over union of a cell mask and a template over every relative shift."""
    t_height, t_width = template.shape
    padded = np.pad(mask, ((t_height - 1, t_height - 1), (t_width - 1, t_width - 1)))
    intersection = int((sliding_window_view(padded, template.shape) & template).sum(axis=(-2, -1)).max())
    return intersection / (int(mask.sum()) + int(template.sum()) - intersection)


def classify_mask(mask: np.ndarray) -> tuple[str | None, float]:
    """The shape whose template overlaps the cell mask best (first listed on ties), and that overlap."""
    best_shape, best_iou = None, 0.0
    for shape, template in SHAPES.items():
        iou = best_overlap(mask, template)
        if iou > best_iou:
            best_shape, best_iou = shape, iou
    return (best_shape, best_iou) if best_iou >= MIN_SHAPE_IOU else (None, best_iou)


def _regions(cells: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the 4-connected one-colour regions that are not background, in raster order."""
    background = PALETTE_INDEX[BACKGROUND]
    seen = np.zeros(cells.shape, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(cells != background), strict=True):
        if seen[start]:
            continue
        mask = np.zeros(cells.shape, dtype=bool)
        stack = [start]
        seen[start] = True
        while stack:
            row, col = stack.pop()
            mask[row, col] = True
            for near in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
                inside = 0 <= near[0] < cells.shape[0] and 0 <= near[1] < cells.shape[1]
                if inside and not seen[near] and cells[near] == cells[start]:
                    seen[near] = True
                    stack.append(near)
        regions.append(mask)
    return regions


def detect_cells(cells: np.ndarray) -> list[DetectedObject]:
    """The objects of a grid of palette indices, in raster order of their first cell."""
    objects = []
    for mask in _regions(cells):
        rows, cols = np.nonzero(mask)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        shape, confidence = classify_mask(mask[y0:y1, x0:x1])
        color = PALETTE_NAMES[cells[rows[0], cols[0]]]
        objects.append(DetectedObject(shape, color, (int(x0), int(y0), int(x1), int(y1)), int(mask.sum()), confidence))
    return objects


def detect_objects(image: Image.Image | np.ndarray) -> list[DetectedObject]:
    """The objects of an image (PIL or HxWx3 uint8), in raster order of their first cell."""
    return detect_cells(image_to_cells(image))


POSITION_THRESHOLD = 0.1
"""GenEval's default `position_threshold`: the share of the two boxes' sizes an offset must exceed."""


def relative_position(box_a: Box, box_b: Box) -> set[str]:
    """GenEval's relations of box A to box B ("left of", "right of", "above", "below"), margins included."""
    boxes = np.array([box_a, box_b], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


@dataclass(frozen=True)
class ClauseResult:
    """Whether one include or exclude clause of the metadata holds, and why not when it fails."""

    kind: Literal["include", "exclude"]
    index: int
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class ImageScore:
    """GenEval's strict per-image decision plus the fraction of satisfied clauses (a dense reward)."""

    tag: str
    prompt: str
    metadata_key: str
    correct: bool
    fraction: float
    clauses: tuple[ClauseResult, ...]

    @property
    def reason(self) -> str:
        """The failed clauses' reasons, one per line, as GenEval reports them."""
        return "\n".join(clause.reason for clause in self.clauses if not clause.passed)


def _by_class(objects: Iterable[DetectedObject]) -> dict[str, list[DetectedObject]]:
    """Objects grouped by shape, most confident first (GenEval's detector order), then raster order."""
    groups: dict[str, list[DetectedObject]] = {}
    for obj in objects:
        if obj.shape is not None:
            groups.setdefault(obj.shape, []).append(obj)
    return {shape: sorted(group, key=lambda obj: -obj.confidence) for shape, group in groups.items()}


def _include(
    req: Mapping[str, Any],
    index: int,
    groups: dict[str, list[DetectedObject]],
    matched: list[list[DetectedObject] | None],
) -> tuple[ClauseResult, list[DetectedObject] | None]:
    """One include clause judged as GenEval judges it, and the objects it matched (None when it failed)."""
    classname, count = req["class"], req["count"]
    candidates = groups.get(classname, [])
    if "color" in req:
        candidates = sorted(candidates, key=lambda obj: obj.color != req["color"])
    found = candidates[:count]
    if len(found) < count:
        return ClauseResult("include", index, False, f"expected {classname}>={count}, found {len(found)}"), None
    if "color" in req:
        colors = [obj.color for obj in found]
        if colors.count(req["color"]) < count:
            seen = ", ".join(f"{colors.count(color)} {color}" for color in dict.fromkeys(colors))
            hits = colors.count(req["color"])
            reason = f"expected {req['color']} {classname}>={count}, found {hits} {req['color']}; and {seen}"
            return ClauseResult("include", index, False, reason), None
    if "position" in req:
        expected, target = req["position"]
        if not 0 <= target < index:
            raise ValueError(f"include[{index}] position target {target} is not an earlier include clause")
        if matched[target] is None:
            return ClauseResult("include", index, False, f"no target for {classname} to be {expected}"), None
        for obj in found:
            for target_obj in matched[target]:
                relations = relative_position(obj.box, target_obj.box)
                if expected not in relations:
                    reason = f"expected {classname} {expected} target, found {' and '.join(sorted(relations))} target"
                    return ClauseResult("include", index, False, reason), None
    return ClauseResult("include", index, True), found


def score_objects(objects: Sequence[DetectedObject], metadata: Mapping[str, Any]) -> ImageScore:
    """Judge detected objects against GenEval metadata: includes AND-ed, excludes OR-ed, positions on matches."""
    groups = _by_class(objects)
    results: list[ClauseResult] = []
    matched: list[list[DetectedObject] | None] = []
    for index, req in enumerate(metadata.get("include", [])):
        result, found = _include(req, index, groups, matched)
        results.append(result)
        matched.append(found)
    for index, req in enumerate(metadata.get("exclude", [])):
        present = len(groups.get(req["class"], []))
        if present >= req["count"]:
            reason = f"expected {req['class']}<{req['count']}, found {present}"
            results.append(ClauseResult("exclude", index, False, reason))
        else:
            results.append(ClauseResult("exclude", index, True))
    passed = sum(result.passed for result in results)
    return ImageScore(
        tag=metadata["tag"],
        prompt=metadata.get("prompt", ""),
        metadata_key=json.dumps(metadata, sort_keys=True),
        correct=passed == len(results),
        fraction=passed / len(results) if results else 1.0,
        clauses=tuple(results),
    )


def score_image(image: Image.Image | np.ndarray, metadata: Mapping[str, Any]) -> ImageScore:
    """Judge one image (PIL or HxWx3 uint8) against one GenEval metadata dict."""
    return score_objects(detect_objects(image), metadata)


@dataclass(frozen=True)
class BenchmarkSummary:
    """GenEval's summary: per-tag accuracy, overall = mean of the tag means, image and prompt accuracy."""

    per_tag: dict[str, float]
    overall: float
    images: int
    correct_images: float
    correct_prompts: float


def summarize(scores: Iterable[ImageScore]) -> BenchmarkSummary:
    """Aggregate like GenEval's summary_scores.py: tags in order of first appearance, overall over tags."""
    scores = list(scores)
    if not scores:
        raise ValueError("cannot summarize zero scored images")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, bool] = {}
    for score in scores:
        by_tag.setdefault(score.tag, []).append(score.correct)
        by_prompt[score.metadata_key] = by_prompt.get(score.metadata_key, False) or score.correct
    per_tag = {tag: float(np.mean(correct)) for tag, correct in by_tag.items()}
    return BenchmarkSummary(
        per_tag=per_tag,
        overall=float(np.mean(list(per_tag.values()))),
        images=len(scores),
        correct_images=float(np.mean([score.correct for score in scores])),
        correct_prompts=float(np.mean(list(by_prompt.values()))),
    )
