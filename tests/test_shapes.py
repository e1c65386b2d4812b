"""The synthetic shapes benchmark: rendering, prompts, exact GenEval-style scoring, datasets and the writer."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simplear.cli import main
from simplear.config import DEFAULT_PALETTE, SHAPES_RECIPES
from simplear.data.meta import CaptionPair, load_meta
from simplear.data.shapes import (
    COLORS,
    GRID,
    IMAGE_PX,
    SHAPES,
    TAGS,
    ImageScore,
    PlacedShape,
    detect_objects,
    long_caption,
    make_dataset,
    make_eval_prompts,
    relative_position,
    render_image,
    render_metadata,
    score_image,
    summarize,
    write_dataset,
)
from simplear.data.shapes.prompts import prompt_metadata, prompt_space_size
from simplear.data.shapes.score import best_overlap, classify_mask


def _metadata(prompt: str) -> dict:
    """The benchmark's metadata whose prompt text is `prompt` (fails if no tag words it so)."""
    for tag in TAGS:
        for index in range(prompt_space_size(tag)):
            metadata = prompt_metadata(tag, index)
            if metadata["prompt"] == prompt:
                return metadata
    raise AssertionError(f"no metadata has the prompt {prompt!r}")


def _failed(score: ImageScore) -> list[tuple[str, int]]:
    """The (kind, index) of every failed clause."""
    return [(clause.kind, clause.index) for clause in score.clauses if not clause.passed]


def _score(objects: list[PlacedShape], prompt: str) -> ImageScore:
    """Score the rendering of hand-placed objects against the metadata of `prompt`."""
    return score_image(render_image(objects), _metadata(prompt))


# --- rendering and detection -------------------------------------------------------------------


def test_images_are_flat_palette_cells_on_white() -> None:
    palette = {color.rgb for color in DEFAULT_PALETTE}
    for record in make_dataset(60, seed=3):
        image = record.image
        assert image.shape == (IMAGE_PX, IMAGE_PX, 3) and image.dtype == np.uint8
        cells = image.reshape(GRID, IMAGE_PX // GRID, GRID, IMAGE_PX // GRID, 3)
        assert (cells == cells[:, :1, :, :1, :]).all(), "every 4x4 cell is one flat colour"
        assert {tuple(int(v) for v in rgb) for rgb in cells[:, 0, :, 0].reshape(-1, 3)} <= palette
        white = (cells[:, 0, :, 0] == (255, 255, 255)).all(axis=-1).sum()
        assert white == GRID * GRID - sum(int(SHAPES[obj.shape].sum()) for obj in record.objects)
        assert {obj.color for obj in record.objects} <= set(COLORS)
        assert 1 <= len(record.objects) <= 4


def test_detection_recovers_every_drawn_object() -> None:
    for record in make_dataset(120, seed=5):
        found = sorted((obj.shape, obj.color, obj.box) for obj in detect_objects(record.image))
        drawn = sorted((obj.shape, obj.color, obj.box) for obj in record.objects)
        assert found == drawn, record.metadata["prompt"]


def test_every_template_is_classified_as_itself_with_a_clear_margin() -> None:
    for name, template in SHAPES.items():
        assert classify_mask(template) == (name, 1.0)
    overlaps = {(a, b): best_overlap(SHAPES[a], SHAPES[b]) for a, b in combinations(SHAPES, 2)}
    assert max(overlaps.values()) == pytest.approx(21 / 25), "square vs circle, the closest pair, differ by 4 cells"


def test_a_blob_that_fits_no_template_is_no_object() -> None:
    blob = np.zeros((GRID, GRID), dtype=bool)
    blob[2:4, 2:12] = True
    image = render_image([PlacedShape("circle", "red", 8, 8)])
    image[blob.repeat(4, 0).repeat(4, 1)] = (0, 130, 200)
    assert [(obj.shape, obj.color) for obj in detect_objects(image)] == [(None, "blue"), ("circle", "red")]
    assert score_image(image, _metadata("a photo of a circle")).correct


def test_regions_touching_only_at_a_corner_stay_apart() -> None:
    image = render_image([PlacedShape("square", "red", 0, 0), PlacedShape("square", "red", 5, 5)])
    found = [(obj.shape, obj.box) for obj in detect_objects(image)]
    assert found == [("square", (0, 0, 5, 5)), ("square", (5, 5, 10, 10))]


def test_scorer_takes_pil_images_and_larger_resolutions() -> None:
    objects = [PlacedShape("cross", "green", 2, 1), PlacedShape("circle", "red", 2, 9)]
    metadata = _metadata("a photo of a cross left of a circle")
    image = render_image(objects)
    assert score_image(Image.fromarray(image), metadata).correct
    assert score_image(np.asarray(Image.fromarray(image).resize((256, 256), Image.NEAREST)), metadata).correct
    with pytest.raises(ValueError, match="not a multiple"):
        score_image(image[:60, :60], metadata)


def test_long_caption_names_each_object_colour_and_place() -> None:
    objects = [PlacedShape("square", "blue", 11, 11), PlacedShape("triangle", "orange", 0, 0)]
    assert long_caption(objects) == (
        "a white background with two objects: an orange triangle in the top left corner"
        " and a blue square in the bottom right corner"
    )
    assert long_caption([PlacedShape("cross", "red", 5, 5)]) == "a white background with a red cross in the center"


# --- prompts ------------------------------------------------------------------------------------


def test_prompts_follow_genevals_schema_and_wording() -> None:
    assert _metadata("a photo of three squares") == {
        "tag": "counting",
        "include": [{"class": "square", "count": 3}],
        "exclude": [{"class": "square", "count": 4}],
        "prompt": "a photo of three squares",
    }
    assert _metadata("a photo of a cross left of a circle") == {
        "tag": "position",
        "include": [{"class": "circle", "count": 1}, {"class": "cross", "count": 1, "position": ["left of", 0]}],
        "prompt": "a photo of a cross left of a circle",
    }
    assert _metadata("a photo of an orange circle")["include"] == [{"class": "circle", "count": 1, "color": "orange"}]
    assert _metadata("a photo of four crosses")["include"] == [{"class": "cross", "count": 4}]
    assert _metadata("a photo of a red circle and a blue cross")["tag"] == "color_attr"
    assert _metadata("a photo of a diamond and a triangle")["tag"] == "two_object"


def test_eval_prompts_are_distinct_reproducible_and_capped_by_each_tags_space() -> None:
    prompts = make_eval_prompts(30, seed=11)
    assert prompts == make_eval_prompts(30, seed=11)
    assert prompts != make_eval_prompts(30, seed=12)
    per_tag = {tag: [p for p in prompts if p["tag"] == tag] for tag in TAGS}
    assert {tag: len(items) for tag, items in per_tag.items()} == {
        tag: min(30, prompt_space_size(tag) // 2) for tag in TAGS
    }
    assert len({json.dumps(p, sort_keys=True) for p in prompts}) == len(prompts)
    assert {p["include"][0]["class"] for p in per_tag["single_object"]} < set(SHAPES)


@pytest.mark.parametrize("recipe", sorted(SHAPES_RECIPES))
def test_held_out_prompts_are_never_training_captions(recipe: str, tmp_path: Path) -> None:
    """The lifecycle's pretrain and SFT datasets (the recipe's sizes and seeds, `simplear shapes`' default
    eval seed) caption no image with a held-out prompt, short or long, yet cover every tag."""
    values = SHAPES_RECIPES[recipe]
    held_out: set[str] = set()
    captions: set[str] = set()
    tags: set[str] = set()
    for name, images, seed, weights in (
            ("pretrain", values.pretrain_images, values.pretrain_data_seed, values.pretrain_tag_weights),
            ("sft", values.sft_images, values.sft_data_seed, values.sft_tag_weights)):
        assert main(["shapes", "--out", str(tmp_path / name), "--n", str(min(images, 600)), "--seed", str(seed),
                     "--eval-per-tag", str(values.eval_per_tag), "--tag-weights", weights]) == 0
        held_out |= {json.loads(line)["prompt"]
                     for line in (tmp_path / name / "evaluation_metadata.jsonl").read_text().splitlines()}
        for line in (tmp_path / name / "meta.jsonl").read_text().splitlines():
            record = json.loads(line)
            captions |= {record["caption"]["short"], record["caption"]["long"]}
            tags.add(record["metadata"]["tag"])
    assert len(held_out) >= len(TAGS) and tags == set(TAGS)
    assert not held_out & captions
    shared = make_dataset(600, seed=0)
    assert held_out & {record.short_caption for record in shared}, "without the exclusion they would meet"


# --- exact scoring ------------------------------------------------------------------------------


def test_every_prompt_of_every_tag_renders_to_a_perfect_score() -> None:
    rng = np.random.default_rng(0)
    for tag in TAGS:
        for index in range(prompt_space_size(tag)):
            record = render_metadata(prompt_metadata(tag, index), rng)
            score = score_image(record.image, record.metadata)
            assert score.correct and score.fraction == 1.0, (record.metadata["prompt"], score.reason)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_training_record_scores_one(seed: int) -> None:
    scores = [score_image(record.image, record.metadata) for record in make_dataset(120, seed)]
    summary = summarize(scores)
    assert summary.per_tag == dict.fromkeys(TAGS, 1.0)
    assert summary.overall == 1.0 and all(score.fraction == 1.0 for score in scores)


def test_one_too_many_fails_only_the_exclude_clause() -> None:
    squares = [PlacedShape("square", "red", row, col) for row, col in ((0, 0), (0, 8), (8, 0), (8, 8))]
    score = _score(squares, "a photo of three squares")
    assert _failed(score) == [("exclude", 0)] and score.fraction == 0.5
    assert "expected square<4, found 4" in score.reason


def test_one_too_few_fails_only_the_include_clause() -> None:
    squares = [PlacedShape("square", "red", row, col) for row, col in ((0, 0), (0, 8))]
    score = _score(squares, "a photo of three squares")
    assert _failed(score) == [("include", 0)]
    assert "expected square>=3, found 2" in score.reason


def test_a_wrong_colour_fails_only_its_clause() -> None:
    score = _score([PlacedShape("circle", "blue", 5, 5)], "a photo of a red circle")
    assert _failed(score) == [("include", 0)] and "expected red circle>=1, found 0 red" in score.reason
    objects = [PlacedShape("circle", "red", 1, 1), PlacedShape("cross", "green", 9, 9)]
    assert _failed(_score(objects, "a photo of a red circle and a blue cross")) == [("include", 1)]


def test_a_clause_with_a_colour_looks_at_objects_of_that_colour_first() -> None:
    objects = [PlacedShape("circle", "blue", 0, 0), PlacedShape("circle", "red", 8, 8)]
    assert _score(objects, "a photo of a red circle").correct


def test_a_clause_without_a_colour_looks_at_the_best_fitting_objects_first() -> None:
    objects = [
        PlacedShape("cross", "green", 0, 0),
        PlacedShape("circle", "red", 6, 5),
        PlacedShape("cross", "blue", 6, 11),
    ]
    image = render_image(objects)
    image[0:4, 8:12] = 255  # the first cross loses its top cell: it stays a cross, but a less certain one
    assert [obj.confidence for obj in detect_objects(image) if obj.shape == "cross"] == [8 / 9, 1.0]
    score = score_image(image, _metadata("a photo of a cross left of a circle"))
    assert _failed(score) == [("include", 1)], "only the surest cross, right of the circle, is judged"


def test_a_wrong_shape_fails_only_its_clause() -> None:
    assert _failed(_score([PlacedShape("diamond", "red", 5, 5)], "a photo of a circle")) == [("include", 0)]
    objects = [PlacedShape("diamond", "red", 1, 1), PlacedShape("square", "green", 9, 9)]
    score = _score(objects, "a photo of a diamond and a triangle")
    assert _failed(score) == [("include", 1)] and "expected triangle>=1, found 0" in score.reason


def test_a_wrong_position_fails_only_the_position_clause() -> None:
    swapped = [PlacedShape("cross", "green", 2, 9), PlacedShape("circle", "red", 2, 1)]
    score = _score(swapped, "a photo of a cross left of a circle")
    assert _failed(score) == [("include", 1)] and score.fraction == 0.5
    assert "expected cross left of target, found right of target" in score.reason
    right = [PlacedShape("cross", "green", 2, 1), PlacedShape("circle", "red", 2, 9)]
    assert _score(right, "a photo of a cross left of a circle").correct


def test_a_missing_target_fails_the_position_clause_too() -> None:
    objects = [PlacedShape("cross", "green", 2, 1), PlacedShape("square", "red", 2, 9)]
    score = _score(objects, "a photo of a cross left of a circle")
    assert _failed(score) == [("include", 0), ("include", 1)]
    assert "no target for cross to be left of" in score.reason


def test_relative_position_is_genevals_rule() -> None:
    assert relative_position((0, 0, 4, 4), (10, 1, 14, 5)) == {"left of"}
    assert relative_position((10, 1, 14, 5), (0, 0, 4, 4)) == {"right of"}
    assert relative_position((0, 0, 4, 4), (0, 8, 4, 12)) == {"above"}
    assert relative_position((0, 0, 4, 4), (8, 8, 12, 12)) == {"left of", "above"}
    # centres one cell apart: inside the 0.1 * (width_a + width_b) margin, so no relation at all
    assert relative_position((0, 0, 10, 10), (1, 0, 11, 10)) == set()
    # offset (6, 3) minus margin 1 -> (5, 2) / |(6, 3)| = (0.75, 0.30): right of, not below
    assert relative_position((6, 3, 11, 8), (0, 0, 5, 5)) == {"right of"}


def test_relative_position_on_cells_equals_it_on_pixels() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = (rng.integers(0, GRID, 2) for _ in range(2))
        box_a = (int(a[0]), int(a[1]), int(a[0]) + 5, int(a[1]) + 5)
        box_b = (int(b[0]), int(b[1]), int(b[0]) + 7, int(b[1]) + 4)
        pixels = [tuple(4 * v for v in box) for box in (box_a, box_b)]
        assert relative_position(box_a, box_b) == relative_position(*pixels)


# --- aggregation --------------------------------------------------------------------------------


def _image_score(tag: str, prompt: str, correct: bool) -> ImageScore:
    """A hand-made score of one image."""
    return ImageScore(tag, prompt, prompt, correct, 1.0 if correct else 0.0, ())


def test_summary_is_the_mean_of_tag_means_as_in_geneval() -> None:
    scores = [
        _image_score("counting", "a", False),
        _image_score("colors", "c", True),
        _image_score("counting", "a", True),
        _image_score("counting", "b", False),
    ]
    summary = summarize(scores)
    assert list(summary.per_tag) == ["counting", "colors"]
    assert summary.per_tag == {"counting": pytest.approx(1 / 3), "colors": 1.0}
    assert summary.overall == pytest.approx(2 / 3)
    assert summary.correct_images == 0.5
    assert summary.correct_prompts == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        summarize([])


# --- datasets -----------------------------------------------------------------------------------


def _fingerprint(records: list) -> list:
    """Everything a record holds, as comparable bytes and text."""
    return [(r.image.tobytes(), r.short_caption, r.long_caption, json.dumps(r.metadata), r.objects) for r in records]


def test_a_seed_reproduces_its_dataset_and_another_seed_differs() -> None:
    first = _fingerprint(make_dataset(30, seed=7))
    assert first == _fingerprint(make_dataset(30, seed=7))
    assert first[:10] == _fingerprint(make_dataset(10, seed=7))
    other = _fingerprint(make_dataset(30, seed=8))
    assert sum(a != b for a, b in zip(first, other, strict=True)) >= 25


def test_records_cycle_through_every_tag_with_matching_captions() -> None:
    records = make_dataset(12, seed=2)
    assert [r.metadata["tag"] for r in records] == list(TAGS) * 2
    for record in records:
        assert record.short_caption == record.metadata["prompt"]
        for obj in record.objects:
            assert f"{obj.color} {obj.shape}" in record.long_caption


def test_tag_weights_set_the_training_mix(tmp_path: Path) -> None:
    """`--tag-weights two_object:2,position:1`: two two-object records for each position record, no other tag."""
    assert main(["shapes", "--out", str(tmp_path), "--n", "30", "--seed", "3", "--eval-per-tag", "2",
                 "--tag-weights", "two_object:2,position:1"]) == 0
    tags = [json.loads(line)["metadata"]["tag"] for line in (tmp_path / "meta.jsonl").read_text().splitlines()]
    assert tags == ["two_object", "two_object", "position"] * 10


@pytest.mark.parametrize(("weights", "message"), [
    ("two_objects:2", "unknown tag 'two_objects'"),
    ("two_object:0.5", "must be a whole number"),
    ("two_object:0,position:0", "every tag weight 0"),
])
def test_bad_tag_weights_are_refused_before_anything_is_written(
    weights: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["shapes", "--out", str(tmp_path / "data"), "--n", "6", "--tag-weights", weights])
    assert not (tmp_path / "data").exists()


def test_written_datasets_are_byte_identical_and_load_back(tmp_path: Path) -> None:
    records = make_dataset(8, seed=4)
    meta_a = write_dataset(records, tmp_path / "a")
    meta_b = write_dataset(make_dataset(8, seed=4), tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files_a) == 9
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    first_line = json.loads(meta_a.read_text().splitlines()[0])
    assert set(first_line) == {"image_path", "caption", "metadata"} and first_line["image_path"] == "images/000000.png"
    loaded = load_meta(str(meta_a))
    assert [r.caption for r in loaded] == [CaptionPair(r.short_caption, r.long_caption) for r in records]
    assert [r.extra["metadata"] for r in loaded] == [r.metadata for r in records]
    for record, meta in zip(records, loaded, strict=True):
        assert np.array_equal(np.asarray(Image.open(meta.image_path)), record.image)
    assert meta_b.name == "meta.jsonl"
