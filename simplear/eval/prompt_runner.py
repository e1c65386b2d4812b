"""Generate images for a list of prompts split over ranks, skipping prompts a previous run completed."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image
from tqdm import tqdm

from simplear.config import SamplingConfig
from simplear.eval.protocols import Protocol, prompt_requests
from simplear.sampling.sampler import Sampler, sample_images
from simplear.vision.base import VisualTokenizer


def run_prompts(
    sampler: Sampler, tokenizer: VisualTokenizer, prompts: list[str], n: int, sampling: SamplingConfig, grid: int,
    batch_size: int, todo: list[int], save: Callable[[int, list[Image.Image]], None], progress: bool = True,
    protocol: Protocol = "fixed",
) -> None:
    """For each prompt index in `todo`, sample `n` images as the protocol asks and hand them to `save`."""
    per_batch = max(1, batch_size // n)
    for start in tqdm(range(0, len(todo), per_batch), desc="evaluate", unit="batch", disable=not progress):
        indices = todo[start : start + per_batch]
        requests = [r for i in indices for r in prompt_requests(protocol, prompts[i], i, n, sampling)]
        images, _ = sample_images(sampler, tokenizer, requests, grid)
        for k, index in enumerate(indices):
            save(index, images[k * n : (k + 1) * n])
