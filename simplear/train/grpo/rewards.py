"""GRPO rewards: plain callables `(prompts, images, metadata) -> list[float]` behind a registry (as open-r1's).

Each reward is built once per run from its RewardSpec, with the run's device, store and CLIP models loaded once,
and trl calls it through TrlReward. `geneval_shapes` is the exact shapes checker, `clip` the image-text similarity
of a CLIP model (loaded and preprocessed without torchvision) and `aesthetic` the LAION aesthetic score. HPSv2 is
left out: its reference model is an open_clip checkpoint and open_clip needs torchvision, which no reward may
depend on.

The aesthetic reward is LAION's improved-aesthetic-predictor MLP over unit-norm CLIP image embeddings. Checkpoint
format: the MLP's state dict saved as safetensors, keys `layers.N.weight` / `layers.N.bias` for its Linear layers
(LAION's is Linear(768, 1024), Linear(1024, 128), Linear(128, 64), Linear(64, 16), Linear(16, 1) at N = 0, 2, 4, 6,
7, with dropouts and no activations in between), over the embeddings of the CLIP model it was trained on (ViT-L/14
for LAION's). LAION publishes it as a pickled `.pth`; convert it once with
`save_file(torch.load("sac+logos+ava1-l14-linearMSE.pth", weights_only=True), "aesthetic.safetensors")`
(`save_file` from `safetensors.torch`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load
from transformers import AutoTokenizer, CLIPModel, PreTrainedTokenizerBase

from simplear.config import RewardSpec
from simplear.data.shapes import score_image
from simplear.store import Store
from simplear.train.grpo.rollout_function import IMAGES_FIELD, METADATA_COLUMN
from simplear.train.metrics import StepTimes

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSOR_FILE = "preprocessor_config.json"
_LAYER_KEY = re.compile(r"layers\.(\d+)\.weight")

RewardFn = Callable[[list[str], list[Image.Image], list[dict[str, Any] | None]], list[float]]
"""Scores one image per prompt; metadata is each prompt's GenEval metadata, or None where its record has none."""


@dataclass(frozen=True)
class ClipPreprocess:
    """What CLIPImageProcessor does: bicubic resize of the short edge, centre crop, scale to [0, 1], normalise."""

    short_edge: int
    crop: int
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    @classmethod
    def from_directory(cls, directory: Path, image_size: int) -> ClipPreprocess:
        """Read a checkpoint's preprocessor_config.json; without one, OpenAI's statistics at the model's image size."""
        path = directory / PREPROCESSOR_FILE
        if not path.is_file():
            return cls(short_edge=image_size, crop=image_size)
        settings = json.loads(path.read_text())
        size, crop = settings.get("size", image_size), settings.get("crop_size", image_size)
        return cls(
            short_edge=size["shortest_edge"] if isinstance(size, dict) else int(size),
            crop=crop["height"] if isinstance(crop, dict) else int(crop),
            mean=tuple(settings.get("image_mean", OPENAI_CLIP_MEAN)),
            std=tuple(settings.get("image_std", OPENAI_CLIP_STD)),
        )

    def resize_and_crop(self, image: Image.Image) -> Image.Image:
        """The RGB image with its short edge at `short_edge` (aspect kept), cut to a centred `crop` square."""
        image = image.convert("RGB")
        width, height = image.size
        scale = self.short_edge / min(width, height)
        size = (self.short_edge, int(height * scale)) if width <= height else (int(width * scale), self.short_edge)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        return image.crop((left, top, left + self.crop, top + self.crop))

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """Pixel values [B, 3, crop, crop] as CLIPModel reads them."""
        arrays = np.stack([np.asarray(self.resize_and_crop(image), dtype=np.float32) / 255.0 for image in images])
        pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (pixels - mean) / std


@dataclass
class LoadedClip:
    """CLIPModel in eval mode on its device, its tokenizer and its image preprocessing."""

    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    preprocess: ClipPreprocess

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.model.device

    @torch.inference_mode()
    def image_embeddings(self, images: list[Image.Image], batch_size: int) -> torch.Tensor:
        """Unit-norm projected image embeddings [B, D] on the model's device, `batch_size` images per forward."""
        parts = []
        for start in range(0, len(images), batch_size):
            pixels = self.preprocess(images[start : start + batch_size]).to(self.device, self.model.dtype)
            parts.append(self.model.get_image_features(pixel_values=pixels).pooler_output)
        return torch.nn.functional.normalize(torch.cat(parts).float(), dim=-1)

    @torch.inference_mode()
    def text_embeddings(self, texts: list[str], batch_size: int) -> torch.Tensor:
        """Unit-norm projected text embeddings [B, D] on the model's device, truncated to CLIP's context."""
        parts = []
        context = self.model.config.text_config.max_position_embeddings
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, max_length=context,
                return_tensors="pt",
            ).to(self.device)
            parts.append(
                self.model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
                .pooler_output
            )
        return torch.nn.functional.normalize(torch.cat(parts).float(), dim=-1)


def _load_dir(path: Path, device: torch.device) -> LoadedClip:
    """Load a local CLIP directory: safetensors weights, tokenizer files, optional preprocessor_config.json."""
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a CLIP model directory: no config.json")
    model = CLIPModel.from_pretrained(path, use_safetensors=True).to(device).eval()
    preprocess = ClipPreprocess.from_directory(path, model.config.vision_config.image_size)
    return LoadedClip(model, AutoTokenizer.from_pretrained(path), preprocess)


def load_clip(uri: str, device: torch.device | str, store: Store | None = None) -> LoadedClip:
    """The CLIP model at a local directory or store URI, on `device`."""
    with (store or Store()).local_dir(uri) as path:
        return _load_dir(path, torch.device(device))


@dataclass
class RewardContext:
    """The device rewards run on, the store their checkpoints come from, and the CLIP models already loaded."""

    device: torch.device
    store: Store
    clips: dict[str, LoadedClip] = field(default_factory=dict)

    def clip(self, spec: RewardSpec) -> LoadedClip:
        """The CLIP model `spec.clip_model` names, loaded once per run however many rewards use it."""
        if not spec.clip_model:
            raise ValueError(f"reward {spec.name!r} needs clip_model: a CLIP directory or store URI")
        if spec.clip_model not in self.clips:
            self.clips[spec.clip_model] = load_clip(spec.clip_model, self.device, self.store)
        return self.clips[spec.clip_model]


RewardBuilder = Callable[[RewardSpec, RewardContext], RewardFn]


def geneval_shapes_reward(
    prompts: list[str], images: list[Image.Image], metadata: list[dict[str, Any] | None]
) -> list[float]:
    """The exact shapes reward: `score_image(image, metadata).fraction`, the share of the prompt's GenEval clauses
    the image satisfies; every prompt needs its GenEval metadata."""
    missing = [prompt for prompt, meta in zip(prompts, metadata, strict=True) if meta is None]
    if missing:
        raise ValueError(f"reward geneval_shapes needs GenEval metadata in each prompt record; {missing[0]!r} has none")
    return [score_image(image, meta).fraction for image, meta in zip(images, metadata, strict=True)]


def build_geneval_shapes_reward(spec: RewardSpec, context: RewardContext) -> RewardFn:
    """The shapes scorer needs nothing loaded: it runs on the CPU, one image at a time."""
    return geneval_shapes_reward


class ClipReward:
    """cos(image embedding, text embedding) per image, in [-1, 1], computed in batches on the CLIP model's device."""

    def __init__(self, clip: LoadedClip, batch_size: int) -> None:
        self.clip = clip
        self.batch_size = batch_size

    def __call__(
        self, prompts: list[str], images: list[Image.Image], metadata: list[dict[str, Any] | None]
    ) -> list[float]:
        """One similarity per (prompt, image) pair."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
        image = self.clip.image_embeddings(images, self.batch_size)
        text = self.clip.text_embeddings(prompts, self.batch_size)
        return (image * text).sum(dim=-1).tolist()


def build_clip_reward(spec: RewardSpec, context: RewardContext) -> RewardFn:
    """The CLIP reward on the model `spec.clip_model` names."""
    return ClipReward(context.clip(spec), spec.batch_size)


def aesthetic_head_from_state(state: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    """The chain of Linear layers a LAION-format state dict holds, in layer order, ending in one output."""
    indices = sorted(int(m.group(1)) for key in state if (m := _LAYER_KEY.fullmatch(key)))
    if not indices:
        raise ValueError("an aesthetic head needs Linear layers saved as layers.N.weight / layers.N.bias")
    layers = []
    for index in indices:
        weight, bias = state[f"layers.{index}.weight"], state.get(f"layers.{index}.bias")
        if layers and weight.shape[1] != layers[-1].out_features:
            raise ValueError(f"layers.{index} takes {weight.shape[1]} inputs but the layer before gives "
                             f"{layers[-1].out_features}")
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        layers.append(layer)
    if layers[-1].out_features != 1:
        raise ValueError(f"the last layer of an aesthetic head must give one score, not {layers[-1].out_features}")
    return torch.nn.Sequential(*layers).eval()


def load_aesthetic_head(uri: str, device: torch.device, store: Store | None = None) -> torch.nn.Sequential:
    """The aesthetic MLP from a .safetensors file (local path or store URI), on `device`."""
    if not uri.endswith(".safetensors"):
        raise ValueError(f"{uri}: the aesthetic head must be a .safetensors file (pickles are refused)")
    return aesthetic_head_from_state(load((store or Store()).read(uri))).to(device)


class AestheticReward:
    """The head's score of each image's unit-norm CLIP embedding (LAION's scale: roughly 1 to 10)."""

    def __init__(self, clip: LoadedClip, head: torch.nn.Sequential, batch_size: int) -> None:
        width = clip.model.config.projection_dim
        if head[0].in_features != width:
            raise ValueError(f"the aesthetic head reads {head[0].in_features}-d embeddings but CLIP gives {width}-d")
        self.clip = clip
        self.head = head
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(
        self, prompts: list[str], images: list[Image.Image], metadata: list[dict[str, Any] | None]
    ) -> list[float]:
        """One score per image; prompts and metadata are not read."""
        embeddings = self.clip.image_embeddings(images, self.batch_size)
        return self.head(embeddings.to(self.head[0].weight.dtype)).squeeze(-1).tolist()


def build_aesthetic_reward(spec: RewardSpec, context: RewardContext) -> RewardFn:
    """The aesthetic reward: CLIP from `spec.clip_model`, the MLP from `spec.aesthetic_head`."""
    if not spec.aesthetic_head:
        raise ValueError("reward 'aesthetic' needs aesthetic_head: the LAION aesthetic MLP as safetensors")
    head = load_aesthetic_head(spec.aesthetic_head, context.device, context.store)
    return AestheticReward(context.clip(spec), head, spec.batch_size)


REWARD_BUILDERS: dict[str, RewardBuilder] = {
    "geneval_shapes": build_geneval_shapes_reward,
    "clip": build_clip_reward,
    "aesthetic": build_aesthetic_reward,
}


@dataclass(frozen=True)
class NamedReward:
    """A built reward and its name (its weight in the trainer's sum is the RewardSpec's, given to trl)."""

    name: str
    fn: RewardFn


def register_reward(name: str, builder: RewardBuilder) -> None:
    """Make `name` usable in a RewardSpec; a name already taken is an error."""
    if name in REWARD_BUILDERS:
        raise ValueError(f"reward {name!r} is already registered")
    REWARD_BUILDERS[name] = builder


def build_rewards(specs: Sequence[RewardSpec], device: torch.device | str, store: Store) -> list[NamedReward]:
    """Build every reward of a run, in order; an unknown or repeated name is an error."""
    names = [spec.name for spec in specs]
    unknown = [name for name in names if name not in REWARD_BUILDERS]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r}; known rewards: {', '.join(sorted(REWARD_BUILDERS))}")
    if len(set(names)) != len(names):
        raise ValueError(f"each reward may appear once; got {names}")
    context = RewardContext(torch.device(device), store)
    return [NamedReward(spec.name, REWARD_BUILDERS[spec.name](spec, context)) for spec in specs]


class TrlReward:
    """One registered reward behind trl's reward-function call; trl logs it under `__name__`, the reward's name.

    trl passes the dataset's columns and the rollout's extra fields as keyword arguments.
    """

    def __init__(self, reward: NamedReward, times: StepTimes) -> None:
        self.reward = reward
        self.times = times
        self.__name__ = reward.name

    def __call__(self, prompts: list[str], completions: list[Any], **columns: Any) -> list[float]:
        """Score the decoded images against their captions and metadata (trl's text completions are not read)."""
        started = time.perf_counter()
        metadata = [json.loads(text) for text in columns[METADATA_COLUMN]]
        scores = self.reward.fn(list(prompts), list(columns[IMAGES_FIELD]), metadata)
        self.times.add("reward", time.perf_counter() - started)
        return scores
