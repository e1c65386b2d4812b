"""CLIP's image preprocessing in PIL and torch (no torchvision): resize the short edge, centre-crop, normalise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSOR_FILE = "preprocessor_config.json"


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
