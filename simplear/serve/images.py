"""From a batch of same-resolution requests to finished images: engine codes, visual-tokenizer decode, base64 PNG."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from PIL import Image

from simplear.config import VisionConfig
from simplear.sampling.batch import Request
from simplear.sampling.engine import SamplingEngine
from simplear.vision import VisualTokenizer
from simplear.vision.base import png_bytes, tensor_to_pil


@dataclass(frozen=True)
class ImageSpec:
    """One image to make: the sampler request (prompt, parameters, resolved seed) and its pixels per side."""

    request: Request
    resolution: int


@dataclass(frozen=True)
class Generated:
    """One finished image: its codes, its PNG as base64 (None when serving codes only), seed and resolution."""

    codes: list[int]
    image_b64: str | None
    seed: int
    resolution: int


class ImageGenerator:
    """An engine and a visual tokenizer (None: codes only) turning a batch of requests into images."""

    def __init__(
        self, engine: SamplingEngine, vision: VisionConfig, tokenizer: VisualTokenizer | None, device: str
    ) -> None:
        self.engine = engine
        self.vision = vision
        self.tokenizer = tokenizer
        self.device = device

    def generate(self, requests: list[Request], resolution: int) -> list[Generated]:
        """One engine call for all requests, all at `resolution`; blocking, run it off the event loop."""
        grid = resolution // self.vision.downsample
        codes = self.engine.generate(requests, grid * grid)
        if self.tokenizer is None:
            images: list[str | None] = [None] * len(requests)
        else:
            pixels = self.tokenizer.decode(codes.view(-1, grid, grid).to(self.device))
            images = [_png_b64(picture) for picture in tensor_to_pil(pixels)]
        return [
            Generated(codes=row.tolist(), image_b64=image, seed=request.params.seed, resolution=resolution)
            for row, image, request in zip(codes, images, requests, strict=True)
        ]


def _png_b64(picture: Image.Image) -> str:
    """Base64 text of a PIL image saved as PNG."""
    return base64.b64encode(png_bytes(picture)).decode("ascii")

