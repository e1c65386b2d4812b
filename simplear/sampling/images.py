"""One batch of requests to PIL images: sample codes (plainly or by SJD), decode them with the visual tokenizer."""

from __future__ import annotations

from PIL import Image

from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.vision.base import VisualTokenizer, tensor_to_pil


def sample_images(
    sampler: Sampler, tokenizer: VisualTokenizer, requests: list[Request], grid: int,
    sjd_window: int | None = None, progress: bool = False,
) -> tuple[list[Image.Image], float | None]:
    """Images for the requests, and SJD's mean accepted codes per forward pass (None without SJD)."""
    if sjd_window is None:
        codes, accepted = sampler.generate(requests, grid * grid, progress=progress), None
    else:
        codes, stats = sampler.generate_sjd(requests, grid * grid, window=sjd_window)
        accepted = stats.mean_accepted_per_step
    return tensor_to_pil(tokenizer.decode(codes.view(-1, grid, grid))), accepted
