"""DPG-Bench-format evaluation: a folder of `<id>.txt` prompts to `<id>.png` files of the images tiled 2x2."""

from __future__ import annotations

from simplear.config import SamplingConfig
from simplear.eval.prompt_runner import run_prompts
from simplear.eval.protocols import Protocol
from simplear.sampling.sampler import Sampler
from simplear.store import Store, join
from simplear.vision.base import VisualTokenizer, image_grid, png_bytes


def read_dpg_prompts(store: Store, folder: str) -> dict[str, str]:
    """Prompt id -> text for every `<id>.txt` in a folder."""
    prompts = {}
    for uri in store.list(folder, recursive=False):
        if uri.endswith(".txt"):
            text = store.read(uri).decode().strip()
            if text:
                prompts[uri.rsplit("/", 1)[-1][: -len(".txt")]] = text
    if not prompts:
        raise ValueError(f"{folder} holds no non-empty <id>.txt prompt files")
    return dict(sorted(prompts.items()))


def run_dpg(
    sampler: Sampler, tokenizer: VisualTokenizer, prompts: dict[str, str], out: str, sampling: SamplingConfig,
    grid: int, batch_size: int, rank: int = 0, world_size: int = 1, store: Store | None = None,
    progress: bool = True, protocol: Protocol = "fixed",
) -> None:
    """Write `<id>.png` (4 images, 2x2) for this rank's prompts that have none yet."""
    store = store or Store()
    ids = list(prompts)
    todo = [i for i in range(rank, len(ids), world_size) if not store.exists(join(out, f"{ids[i]}.png"))]
    run_prompts(sampler, tokenizer, list(prompts.values()), 4, sampling, grid, batch_size, todo,
                lambda i, images: store.write(join(out, f"{ids[i]}.png"), png_bytes(image_grid(images, columns=2))),
                progress, protocol)
