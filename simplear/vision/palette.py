"""A lossless tokenizer for images drawn as a grid of flat palette colours: one code per cell."""

from __future__ import annotations

import torch

from simplear.config import DEFAULT_PALETTE, PaletteColor


class PaletteTokenizer:
    """Code = index of the palette colour nearest to a cell's mean colour; decoding paints the cells back."""

    def __init__(self, palette: tuple[PaletteColor, ...] = DEFAULT_PALETTE, cell: int = 4) -> None:
        if len(palette) < 2 or cell < 1:
            raise ValueError("a palette tokenizer needs at least two colours and a cell of at least 1 px")
        self.palette = palette
        self.codebook_size = len(palette)
        self.downsample = cell
        self._rgb = torch.tensor([c.rgb for c in palette], dtype=torch.float32).div(127.5).sub(1.0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Codes [B, H/cell, W/cell] of images [B, 3, H, W] in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        b, _, h, w = images.shape
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"image size {h}x{w} is not a multiple of the {self.downsample} px cell")
        cells = torch.nn.functional.avg_pool2d(images.float(), self.downsample)
        colours = cells.permute(0, 2, 3, 1).reshape(-1, 3)
        nearest = torch.cdist(colours, self._rgb.to(colours.device)).argmin(dim=1)
        return nearest.view(b, h // self.downsample, w // self.downsample)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, h*cell, w*cell] in [-1, 1] of codes [B, h, w]."""
        if codes.ndim != 3:
            raise ValueError(f"expected codes [B, h, w], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        rgb = self._rgb.to(codes.device)[codes.long()].permute(0, 3, 1, 2)
        return rgb.repeat_interleave(self.downsample, dim=2).repeat_interleave(self.downsample, dim=3)
