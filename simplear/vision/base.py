"""The VisualTokenizer seam, conversions between PIL images and [-1, 1] tensors, PNG bytes and image grids."""

from __future__ import annotations

import io
from typing import Protocol

import numpy as np
import torch
from PIL import Image


class VisualTokenizer(Protocol):
    """Turns images [B, 3, H, W] in [-1, 1] into codes [B, h, w] and back."""

    codebook_size: int
    downsample: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Codes [B, H/downsample, W/downsample] of images [B, 3, H, W] in [-1, 1]."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, h*downsample, w*downsample] in [-1, 1] of codes [B, h, w]."""
        ...


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """A batch [B, 3, H, W] in [-1, 1] from same-sized RGB images."""
    arrays = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """RGB images from a batch [B, 3, H, W] in [-1, 1] (values outside are clipped)."""
    arrays = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arrays]


def png_bytes(image: Image.Image) -> bytes:
    """An image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_grid(images: list[Image.Image], columns: int) -> Image.Image:
    """Tile same-sized images into one grid image, row by row."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    w, h = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    return grid
