"""Visual tokenizers: the lossless palette tokenizer and the Cosmos TorchScript loading and batching path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_fake_cosmos
from PIL import Image

from simplear.config import DEFAULT_PALETTE, get_preset
from simplear.data.shapes import make_dataset
from simplear.store import Store
from simplear.vision import CosmosTokenizer, PaletteTokenizer, load_visual_tokenizer
from simplear.vision.base import image_grid, pil_to_tensor, png_bytes, tensor_to_pil


def test_palette_round_trip_is_lossless() -> None:
    """Random cell codes -> image -> codes gives the same codes, and pixels survive PNG conversion."""
    tok = PaletteTokenizer()
    codes = torch.randint(0, tok.codebook_size, (3, 16, 16), generator=torch.Generator().manual_seed(0))
    images = tok.decode(codes)
    assert images.shape == (3, 3, 64, 64)
    assert torch.equal(tok.encode(images), codes)
    assert torch.equal(tok.encode(pil_to_tensor(tensor_to_pil(images))), codes)


def test_palette_codes_of_shapes_images_name_their_colours() -> None:
    """The tokenizer reads each drawn cell of the synthetic shapes as its palette colour."""
    tok = load_visual_tokenizer(get_preset("tiny").vision)
    names = [c.name for c in DEFAULT_PALETTE]
    for record in make_dataset(8, seed=1):
        codes = tok.encode(pil_to_tensor([Image.fromarray(record.image)]))[0]
        cells = record.image[::4, ::4]
        expected = [[names.index(_name_of(rgb)) for rgb in row] for row in cells]
        assert codes.tolist() == expected


def _name_of(rgb: np.ndarray) -> str:
    return next(c.name for c in DEFAULT_PALETTE if tuple(c.rgb) == tuple(int(v) for v in rgb))


def test_palette_rejects_bad_input() -> None:
    """Wrong shapes, sizes off the cell grid and out-of-range codes are clear errors."""
    tok = PaletteTokenizer(cell=4)
    with pytest.raises(ValueError, match="multiple of the 4 px cell"):
        tok.encode(torch.zeros(1, 3, 10, 10))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tok.encode(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="codes must lie"):
        tok.decode(torch.full((1, 2, 2), 16))


def test_image_grid_tiles_row_by_row() -> None:
    """A grid of 5 images in 2 columns has 3 rows and keeps each image in place."""
    tok = PaletteTokenizer()
    codes = torch.arange(5)[:, None, None].expand(5, 2, 2)
    images = tensor_to_pil(tok.decode(codes))
    grid = image_grid(images, columns=2)
    assert grid.size == (16, 24)
    assert grid.getpixel((8, 8)) == DEFAULT_PALETTE[3].rgb
    assert grid.getpixel((0, 16)) == DEFAULT_PALETTE[4].rgb
    decoded = Image.open(io.BytesIO(png_bytes(grid)))
    assert decoded.format == "PNG" and decoded.tobytes() == grid.tobytes(), "PNG bytes decode to the same pixels"


@pytest.fixture
def cosmos_dir(tmp_path: Path) -> Path:
    """A directory holding scripted stand-ins for encoder.jit and decoder.jit."""
    return write_fake_cosmos(tmp_path)


def _blocks(batch: int) -> torch.Tensor:
    """Images made of flat 16 px blocks whose colours the fake codebook represents exactly."""
    levels = torch.randint(0, 40, (batch, 3, 4, 4), generator=torch.Generator().manual_seed(batch)).float()
    return (levels / 19.5 - 1).repeat_interleave(16, dim=2).repeat_interleave(16, dim=3)


def test_cosmos_loads_the_torchscript_pair_and_batches(cosmos_dir: Path) -> None:
    """encode gives [B, h, w] codes < 64,000; micro-batching does not change results; decode inverts."""
    images = _blocks(5)
    small = CosmosTokenizer.load(cosmos_dir, batch_size=2)
    large = CosmosTokenizer.load(cosmos_dir, batch_size=8)
    codes = small.encode(images)
    assert codes.shape == (5, 4, 4) and codes.dtype == torch.long
    assert int(codes.max()) < CosmosTokenizer.codebook_size
    assert torch.equal(codes, large.encode(images))
    torch.testing.assert_close(small.decode(codes), images, atol=1e-5, rtol=0)


def test_cosmos_runs_in_the_requested_dtype(cosmos_dir: Path) -> None:
    """The modules are cast to the dtype; decoded images come back as float32 in [-1, 1]."""
    tok = CosmosTokenizer.load(cosmos_dir, dtype=torch.bfloat16)
    out = tok.decode(tok.encode(_blocks(2)))
    assert out.dtype == torch.float32 and float(out.abs().max()) <= 1.0
    assert tok._decoder.scale.dtype == torch.bfloat16


def test_cosmos_from_the_store(cosmos_dir: Path, s3_store: tuple[Store, str]) -> None:
    """The same checkpoint read from an s3:// prefix gives the same codes."""
    store, bucket = s3_store
    for name in ("encoder.jit", "decoder.jit"):
        store.upload_file(cosmos_dir / name, f"{bucket}/cosmos/{name}")
    remote = CosmosTokenizer.load(f"{bucket}/cosmos", store=store)
    assert torch.equal(remote.encode(_blocks(3)), CosmosTokenizer.load(cosmos_dir).encode(_blocks(3)))


def test_cosmos_errors_are_clear(cosmos_dir: Path, tmp_path: Path) -> None:
    """Missing files, a half loaded without its part, bad shapes and out-of-range codes are refused."""
    with pytest.raises(FileNotFoundError, match="encoder.jit does not exist"):
        CosmosTokenizer.load(tmp_path / "missing")
    decoder_only = CosmosTokenizer.load(cosmos_dir, encoder=False)
    with pytest.raises(RuntimeError, match="without its encoder"):
        decoder_only.encode(_blocks(1))
    with pytest.raises(ValueError, match="multiples of 16"):
        CosmosTokenizer.load(cosmos_dir).encode(torch.zeros(1, 3, 20, 32))
    with pytest.raises(ValueError, match="codes must lie"):
        decoder_only.decode(torch.full((1, 2, 2), 64_000))
    with pytest.raises(ValueError, match="needs a checkpoint"):
        load_visual_tokenizer(get_preset("0.5B").vision)
