"""A CLIP model (transformers' CLIPModel) from a directory or store URI, with unit-norm image and text embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPModel, PreTrainedTokenizerBase

from simplear.store import Store
from simplear.train.rewards.clip_preprocess import ClipPreprocess


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
