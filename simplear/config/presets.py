"""Model presets: the strict base of every config block, transformer shapes, visual tokenizers and the named sizes."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base for every config block: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelShape(Strict):
    """Transformer shape of a Qwen2 decoder."""

    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelShape:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must divide into num_heads {self.num_heads}, "
                f"which must divide into num_kv_heads {self.num_kv_heads}"
            )
        return self

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads


class PaletteColor(Strict):
    """One named flat colour of the palette tokenizer."""

    name: str
    rgb: tuple[int, int, int]


DEFAULT_PALETTE: tuple[PaletteColor, ...] = tuple(
    PaletteColor(name=name, rgb=rgb)
    for name, rgb in (
        ("white", (255, 255, 255)),
        ("black", (0, 0, 0)),
        ("gray", (128, 128, 128)),
        ("red", (230, 25, 75)),
        ("green", (60, 180, 75)),
        ("blue", (0, 130, 200)),
        ("yellow", (255, 225, 25)),
        ("orange", (245, 130, 48)),
        ("purple", (145, 30, 180)),
        ("cyan", (70, 240, 240)),
        ("pink", (240, 50, 230)),
        ("brown", (170, 110, 40)),
        ("lime", (210, 245, 60)),
        ("teal", (0, 128, 128)),
        ("navy", (0, 0, 128)),
        ("maroon", (128, 0, 0)),
    )
)


class VisionConfig(Strict):
    """Which visual tokenizer turns images into codes, and at what resolution."""

    kind: Literal["palette", "cosmos"]
    codebook_size: int = Field(gt=0)
    downsample: int = Field(gt=0)
    resolution: int = Field(gt=0)
    palette: tuple[PaletteColor, ...] = ()
    checkpoint: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> VisionConfig:
        if self.resolution % self.downsample:
            raise ValueError(f"resolution {self.resolution} is not a multiple of downsample {self.downsample}")
        if self.kind == "palette" and len(self.palette) != self.codebook_size:
            raise ValueError(f"palette has {len(self.palette)} colours but codebook_size is {self.codebook_size}")
        return self

    @property
    def grid(self) -> int:
        """Codes per image side."""
        return self.resolution // self.downsample

    @property
    def num_codes(self) -> int:
        """Codes per image."""
        return self.grid * self.grid


class Preset(Strict):
    """A named model size: transformer shape, text vocabulary and visual tokenizer."""

    name: str
    shape: ModelShape
    vision: VisionConfig
    text_vocab_size: int | None = Field(
        default=None,
        description="len(text tokenizer) incl. SimpleAR specials; None = whatever the offline tokenizer has",
    )


COSMOS_CODEBOOK_SIZE = 64_000
COSMOS_DOWNSAMPLE = 16
QWEN25_TEXT_VOCAB = 151_672  # Qwen2.5 tokenizer (151,665) + the 7 SimpleAR special tokens


TINY_ROPE_THETA = (16 / (2 * math.pi)) ** 8
"""The tiny preset's RoPE base: its third frequency (base^(-2*2/32) of 32-wide heads) turns once every 16 tokens, one
row of its 16 x 16 code grid, so attention finds the cell above and the column exactly (at 10,000 no frequency does,
and samples wrap shapes across the right edge)."""

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        shape=ModelShape(
            hidden_size=128,
            intermediate_size=512,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            rope_theta=TINY_ROPE_THETA,
            max_position_embeddings=2048,
        ),
        vision=VisionConfig(
            kind="palette",
            codebook_size=len(DEFAULT_PALETTE),
            downsample=4,
            resolution=64,
            palette=DEFAULT_PALETTE,
        ),
    ),
    "0.5B": Preset(
        name="0.5B",
        shape=ModelShape(hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2),
        vision=VisionConfig(
            kind="cosmos", codebook_size=COSMOS_CODEBOOK_SIZE, downsample=COSMOS_DOWNSAMPLE, resolution=1024
        ),
        text_vocab_size=QWEN25_TEXT_VOCAB,
    ),
    "1.5B": Preset(
        name="1.5B",
        shape=ModelShape(hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2),
        vision=VisionConfig(
            kind="cosmos", codebook_size=COSMOS_CODEBOOK_SIZE, downsample=COSMOS_DOWNSAMPLE, resolution=1024
        ),
        text_vocab_size=QWEN25_TEXT_VOCAB,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a clear error listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
