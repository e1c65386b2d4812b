"""GenEval-format evaluation: prompts to per-prompt folders the official scorer reads; shapes runs are also scored."""

from __future__ import annotations

import time

from simplear.config import SamplingConfig
from simplear.data.shapes import BenchmarkSummary
from simplear.eval.geneval_layout import folder_complete, write_prompt_folder
from simplear.eval.prompt_runner import run_prompts
from simplear.eval.protocols import Protocol, benchmark_caption
from simplear.eval.shapes_scoring import score_shapes_run
from simplear.sampling.sampler import Sampler
from simplear.store import Store
from simplear.vision.base import VisualTokenizer


def run_geneval(
    sampler: Sampler, tokenizer: VisualTokenizer, prompts: list[dict], out: str, n: int, sampling: SamplingConfig,
    grid: int, batch_size: int, rank: int = 0, world_size: int = 1, score_shapes: bool = False,
    store: Store | None = None, wait_timeout_s: float = 3600.0, progress: bool = True, protocol: Protocol = "fixed",
) -> BenchmarkSummary | None:
    """Generate this rank's missing prompt folders; rank 0 then waits for all and, for shapes, scores them."""
    store = store or Store()
    todo = [i for i in range(rank, len(prompts), world_size) if not folder_complete(store, out, i)]
    texts = [benchmark_caption(protocol, p) for p in prompts]
    run_prompts(sampler, tokenizer, texts, n, sampling, grid, batch_size, todo,
                lambda i, images: write_prompt_folder(store, out, i, prompts[i], images), progress, protocol)
    if rank != 0 or not score_shapes:
        return None
    deadline = time.monotonic() + wait_timeout_s
    while missing := [i for i in range(len(prompts)) if not folder_complete(store, out, i)]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt folders {missing[:10]} of {out} are still missing after {wait_timeout_s:.0f} s")
        time.sleep(1.0)
    return score_shapes_run(store, out, prompts)
