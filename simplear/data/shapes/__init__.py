"""The synthetic GenEval-style shapes benchmark: render, caption, prompt, score and write datasets."""

from simplear.data.shapes.dataset import (
    ShapeRecord,
    make_dataset,
    make_eval_prompts,
    render_metadata,
    write_dataset,
)
from simplear.data.shapes.prompts import POSITIONS, TAGS, long_caption
from simplear.data.shapes.scene import BACKGROUND, COLORS, GRID, IMAGE_PX, SHAPES, PlacedShape, render_image
from simplear.data.shapes.score import (
    BenchmarkSummary,
    ClauseResult,
    DetectedObject,
    ImageScore,
    detect_objects,
    relative_position,
    score_image,
    score_objects,
    summarize,
)

__all__ = [
    "BACKGROUND",
    "COLORS",
    "GRID",
    "IMAGE_PX",
    "POSITIONS",
    "SHAPES",
    "TAGS",
    "BenchmarkSummary",
    "ClauseResult",
    "DetectedObject",
    "ImageScore",
    "PlacedShape",
    "ShapeRecord",
    "detect_objects",
    "long_caption",
    "make_dataset",
    "make_eval_prompts",
    "relative_position",
    "render_image",
    "render_metadata",
    "score_image",
    "score_objects",
    "summarize",
    "write_dataset",
]
