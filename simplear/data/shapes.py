"""The synthetic GenEval-style shapes benchmark: render, caption, prompt, score and write datasets."""

from simplear.data.shapes_captions import long_caption
from simplear.data.shapes_catalog import BACKGROUND, COLORS, GRID, IMAGE_PX, SHAPES
from simplear.data.shapes_dataset import (
    ShapeRecord,
    make_dataset,
    make_eval_prompts,
    render_metadata,
    write_dataset,
)
from simplear.data.shapes_detect import DetectedObject, detect_objects
from simplear.data.shapes_prompts import POSITIONS, TAGS
from simplear.data.shapes_render import PlacedShape, render_image
from simplear.data.shapes_score import (
    BenchmarkSummary,
    ClauseResult,
    ImageScore,
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
