"""GRPO rewards: the shapes scorer's fraction, CLIP similarity and the LAION aesthetic MLP on tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLIP_MEAN, CLIP_STD, LAION_LAYERS, aesthetic_state, write_aesthetic_head, write_tiny_clip
from PIL import Image
from transformers import CLIPModel, PreTrainedTokenizerFast

from simplear.config import GRPOTrainConfig, RewardSpec
from simplear.data.shapes import make_dataset, score_image
from simplear.data.shapes.prompts import prompt_metadata
from simplear.store import Store, join
from simplear.train.grpo.rewards import (
    REWARD_BUILDERS,
    ClipPreprocess,
    aesthetic_head_from_state,
    build_rewards,
    load_clip,
    register_reward,
)
from simplear.train.grpo.trainer import grpo_arguments


def coloured_images() -> list[Image.Image]:
    """Three different test images: a red-blue split, a green square, random noise (non-square sizes included)."""
    split = Image.new("RGB", (48, 40), (230, 25, 75))
    split.paste((0, 130, 200), (24, 0, 48, 40))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return [split, Image.new("RGB", (32, 32), (60, 180, 75)), noise]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random CLIP directory."""
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def hand_pixels(image: Image.Image) -> torch.Tensor:
    """CLIP pixels computed by hand: short edge to 36 (bicubic), centre 32x32 crop, /255, (x - mean) / std."""
    width, height = image.size
    size = (36, int(height * 36 / width)) if width <= height else (int(width * 36 / height), 36)
    resized = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    top, left = (size[1] - 32) // 2, (size[0] - 32) // 2
    crop = resized[top : top + 32, left : left + 32]
    normalised = (crop - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(normalised).permute(2, 0, 1)


# ---------------------------------------------------------------- geneval_shapes


def test_shapes_reward_is_the_scorers_fraction_of_satisfied_clauses() -> None:
    """Matching images score 1; a blank image scores the scorer's fraction (a counting prompt's exclude holds: 1/2)."""
    [reward] = build_rewards([RewardSpec(name="geneval_shapes")], "cpu", Store())
    records = make_dataset(6, seed=3)
    blank = Image.new("RGB", (64, 64), (255, 255, 255))
    counting = prompt_metadata("counting", 0)
    images = [Image.fromarray(r.image) for r in records] + [blank, blank]
    metadata = [r.metadata for r in records] + [counting, records[1].metadata]
    scores = reward.fn([m["prompt"] for m in metadata], images, metadata)
    assert scores == [score_image(image, meta).fraction for image, meta in zip(images, metadata, strict=True)]
    assert scores[:6] == [1.0] * 6
    assert scores[6:] == [0.5, 0.0]
    assert reward.name == "geneval_shapes"


def test_shapes_reward_needs_metadata() -> None:
    """A prompt record without GenEval metadata cannot be scored, and the error says which prompt."""
    [reward] = build_rewards([RewardSpec(name="geneval_shapes")], "cpu", Store())
    with pytest.raises(ValueError, match="'a red circle' has none"):
        reward.fn(["a red circle"], [Image.new("RGB", (64, 64))], [None])


# ---------------------------------------------------------------- CLIP


def test_clip_preprocessing_matches_a_hand_computation(clip_dir: Path) -> None:
    """The preprocessor config is read; resize of the short edge, centre crop and normalisation agree with numpy."""
    preprocess = ClipPreprocess.from_directory(clip_dir, image_size=32)
    assert preprocess == ClipPreprocess(short_edge=36, crop=32, mean=CLIP_MEAN, std=CLIP_STD)
    images = coloured_images()
    pixels = preprocess(images)
    assert pixels.shape == (3, 3, 32, 32)
    for got, image in zip(pixels, images, strict=True):
        torch.testing.assert_close(got, hand_pixels(image), atol=1e-6, rtol=0)
    left_half = pixels[0, :, :, :8].mean(dim=(1, 2))
    red = (torch.tensor([230, 25, 75]) / 255.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(left_half, red.float(), atol=1e-5, rtol=0)
    assert ClipPreprocess.from_directory(clip_dir / "missing", image_size=224) == ClipPreprocess(224, 224)


def test_clip_reward_is_the_cosine_similarity_computed_by_hand(clip_dir: Path) -> None:
    """Each score is cos(image, text) as CLIPModel's own logits_per_image / logit_scale give it, image by image."""
    [reward] = build_rewards([RewardSpec(name="clip", clip_model=str(clip_dir), batch_size=2)], "cpu", Store())
    prompts = ["a red circle and a blue square", "a green square", "three crosses"]
    images = coloured_images()
    scores = reward.fn(prompts, images, [None] * 3)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(clip_dir)
    with torch.no_grad():
        for prompt, image, score in zip(prompts, images, scores, strict=True):
            tokens = tokenizer([prompt], return_tensors="pt")
            out = model(input_ids=tokens.input_ids, pixel_values=hand_pixels(image)[None])
            cosine = float(out.logits_per_image[0, 0] / model.logit_scale.exp())
            assert score == pytest.approx(cosine, abs=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert len({round(s, 6) for s in scores}) == 3, "different pairs, different similarities"


def test_clip_loads_from_the_store(clip_dir: Path, s3_store: tuple[Store, str]) -> None:
    """A CLIP directory uploaded as an artifact loads from its s3:// URI and embeds exactly as the local copy."""
    store, bucket = s3_store
    uri = join(bucket, "models", "tiny-clip")
    store.put_artifact(str(clip_dir), uri)
    images, texts = coloured_images(), ["a red circle", "two squares", "a cross"]
    remote, local = load_clip(uri, "cpu", store), load_clip(str(clip_dir), "cpu")
    assert torch.equal(remote.image_embeddings(images, 3), local.image_embeddings(images, 3))
    assert torch.equal(remote.text_embeddings(texts, 3), local.text_embeddings(texts, 3))
    torch.testing.assert_close(local.image_embeddings(images, 1), local.image_embeddings(images, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(local.text_embeddings(texts, 2), local.text_embeddings(texts, 3), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- aesthetic


def test_aesthetic_reward_is_the_laion_mlp_on_unit_norm_clip_embeddings(clip_dir: Path, tmp_path: Path) -> None:
    """Score = the Linear chain (no activations) applied to the normalised projected CLIP image embedding."""
    head = write_aesthetic_head(tmp_path / "aesthetic.safetensors")
    spec = RewardSpec(name="aesthetic", clip_model=str(clip_dir), aesthetic_head=str(head))
    [reward] = build_rewards([spec], "cpu", Store())
    images = coloured_images()
    scores = reward.fn(["ignored"] * 3, images, [None] * 3)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    state = aesthetic_state()
    with torch.no_grad():
        for image, score in zip(images, scores, strict=True):
            embedding = model.visual_projection(model.vision_model(pixel_values=hand_pixels(image)[None]).pooler_output)
            x = embedding / embedding.norm()
            for index in LAION_LAYERS:
                x = x @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"]
            assert score == pytest.approx(float(x), abs=1e-5)
    assert len({round(s, 6) for s in scores}) == 3


def test_aesthetic_head_is_checked(clip_dir: Path, tmp_path: Path) -> None:
    """Pickles are refused, a head of the wrong width or without one output is refused, gaps between layers too."""
    base = {"name": "aesthetic", "clip_model": str(clip_dir)}
    with pytest.raises(ValueError, match="needs aesthetic_head"):
        build_rewards([RewardSpec(**base)], "cpu", Store())
    with pytest.raises(ValueError, match=r"\.safetensors file"):
        build_rewards([RewardSpec(**base, aesthetic_head=str(tmp_path / "head.pth"))], "cpu", Store())
    wide = write_aesthetic_head(tmp_path / "wide.safetensors", width=768)
    with pytest.raises(ValueError, match="reads 768-d embeddings but CLIP gives 16-d"):
        build_rewards([RewardSpec(**base, aesthetic_head=str(wide))], "cpu", Store())
    state = aesthetic_state()
    with pytest.raises(ValueError, match="must give one score"):
        aesthetic_head_from_state({k: v for k, v in state.items() if not k.startswith("layers.7.")})
    with pytest.raises(ValueError, match="layers.6 takes 6 inputs"):
        aesthetic_head_from_state({k: v for k, v in state.items() if not k.startswith("layers.4.")})
    with pytest.raises(ValueError, match="layers.N.weight"):
        aesthetic_head_from_state({"weight": torch.zeros(1, 16)})


# ---------------------------------------------------------------- registry


def test_unknown_reward_is_a_clear_error() -> None:
    """An unknown name lists the known ones; a repeated reward and a CLIP reward without a model are refused."""
    with pytest.raises(ValueError, match="unknown reward 'hpsv2'; known rewards: aesthetic, clip, geneval_shapes"):
        build_rewards([RewardSpec(name="geneval_shapes"), RewardSpec(name="hpsv2")], "cpu", Store())
    with pytest.raises(ValueError, match="each reward may appear once"):
        build_rewards([RewardSpec(name="geneval_shapes"), RewardSpec(name="geneval_shapes")], "cpu", Store())
    with pytest.raises(ValueError, match="'clip' needs clip_model"):
        build_rewards([RewardSpec(name="clip")], "cpu", Store())


def test_rewards_share_one_clip_and_keep_their_weights(clip_dir: Path, tmp_path: Path) -> None:
    """clip and aesthetic on the same CLIP load it once; names come from the specs in order, and trl's reward
    weights (the weighted sum it optimises) are the specs' weights in the same order."""
    head = write_aesthetic_head(tmp_path / "aesthetic.safetensors")
    specs = [
        RewardSpec(name="clip", weight=2.0, clip_model=str(clip_dir)),
        RewardSpec(name="aesthetic", weight=-0.5, clip_model=str(clip_dir), aesthetic_head=str(head)),
    ]
    clip, aesthetic = build_rewards(specs, "cpu", Store())
    assert (clip.name, aesthetic.name) == ("clip", "aesthetic")
    assert clip.fn.clip is aesthetic.fn.clip
    config = GRPOTrainConfig(prompts="p", output="o", init_from="m", max_steps=1, rewards=specs)
    assert grpo_arguments(config, tmp_path / "trl", num_codes=16).reward_weights == [2.0, -0.5]


def test_registered_rewards_can_be_built_and_names_are_unique() -> None:
    """register_reward adds a builder by name; taking a registered name again is refused."""
    def brightness(prompts: list[str], images: list[Image.Image], metadata: list) -> list[float]:
        return [float(np.asarray(image).mean() / 255) for image in images]

    register_reward("brightness", lambda spec, context: brightness)
    try:
        [reward] = build_rewards([RewardSpec(name="brightness", weight=3.0)], "cpu", Store())
        white, black = Image.new("RGB", (8, 8), (255, 255, 255)), Image.new("RGB", (8, 8))
        assert reward.fn(["x", "y"], [white, black], [None, None]) == [1.0, 0.0]
        with pytest.raises(ValueError, match="already registered"):
            register_reward("clip", lambda spec, context: brightness)
    finally:
        REWARD_BUILDERS.pop("brightness")
