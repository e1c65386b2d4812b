"""The Cosmos DV8x16x16 discrete tokenizer from its TorchScript `encoder.jit` / `decoder.jit`."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from simplear.config import COSMOS_CODEBOOK_SIZE, COSMOS_DOWNSAMPLE
from simplear.store import Store, is_s3, join


class CosmosTokenizer:
    """Images in [-1, 1] <-> 64,000 FSQ codes on a 16x downsampled grid, run in micro-batches."""

    codebook_size = COSMOS_CODEBOOK_SIZE
    downsample = COSMOS_DOWNSAMPLE

    def __init__(
        self,
        encoder: torch.jit.ScriptModule | None,
        decoder: torch.jit.ScriptModule | None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self._encoder = encoder.to(self.device, dtype).eval() if encoder is not None else None
        self._decoder = decoder.to(self.device, dtype).eval() if decoder is not None else None

    @classmethod
    def load(
        cls,
        uri: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        encoder: bool = True,
        decoder: bool = True,
        store: Store | None = None,
    ) -> CosmosTokenizer:
        """Load the wanted halves from a checkpoint directory or store prefix holding encoder.jit / decoder.jit."""
        store = store or Store()

        def jit(name: str) -> torch.jit.ScriptModule:
            path = join(str(uri), name)
            if not is_s3(path) and not Path(path).is_file():
                raise FileNotFoundError(f"Cosmos tokenizer file {path} does not exist")
            data = store.read(path) if is_s3(path) else Path(path).read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Cosmos ships TorchScript, not torch.export
                return torch.jit.load(io.BytesIO(data), map_location="cpu")

        return cls(
            jit("encoder.jit") if encoder else None,
            jit("decoder.jit") if decoder else None,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
        )

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Codes [B, H/16, W/16] of images [B, 3, H, W] in [-1, 1]."""
        if self._encoder is None:
            raise RuntimeError("this CosmosTokenizer was loaded without its encoder")
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 16 or images.shape[3] % 16:
            raise ValueError(f"expected images [B, 3, H, W] with H and W multiples of 16, got {tuple(images.shape)}")
        out = []
        for chunk in images.split(self.batch_size):
            result = self._encoder(chunk.to(self.device, self.dtype).unsqueeze(2))
            indices = result[0] if isinstance(result, (tuple, list)) else result
            out.append(indices.squeeze(1).long())
        return torch.cat(out).to(images.device)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, 16h, 16w] in [-1, 1] of codes [B, h, w]."""
        if self._decoder is None:
            raise RuntimeError("this CosmosTokenizer was loaded without its decoder")
        if codes.ndim != 3:
            raise ValueError(f"expected codes [B, h, w], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        out = []
        for chunk in codes.split(self.batch_size):
            video = self._decoder(chunk.to(self.device).unsqueeze(1))
            out.append(video.squeeze(2).float().clamp(-1, 1))
        return torch.cat(out).to(codes.device)
