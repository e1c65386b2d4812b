"""Find the objects of a shapes image: one-colour connected cell regions, each classified by shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from simplear.data.shapes_catalog import BACKGROUND, GRID, PALETTE_INDEX, PALETTE_NAMES, PALETTE_RGB, SHAPES
from simplear.data.shapes_render import Box

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
