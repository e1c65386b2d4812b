"""The Sampler: prompts to codes with batched CFG, top-k/top-p, counter-based RNG and CUDA graphs over a KV cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from PIL import Image
from tqdm import tqdm

from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import PromptBatch, Request, build_batch
from simplear.sampling.decoder import Decoder, KVCache
from simplear.sampling.distribution import categorical, guided_logprobs, repetition_penalized, target_probs, uniform
from simplear.sampling.sjd import SJDStats, jacobi_decode
from simplear.vision.base import VisualTokenizer, tensor_to_pil


class StepGraphs:
    """Replays a captured decode step; a bucket's first call runs the step eagerly (the warm-up), then captures it."""

    def __init__(self) -> None:
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._pool: tuple | None = None

    def run(self, bucket: int, step: Callable[[], None]) -> None:
        """Perform one decode step for attention length `bucket`."""
        graph = self._graphs.get(bucket)
        if graph is not None:
            graph.replay()
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            step()
        self._pool = graph.pool()
        self._graphs[bucket] = graph


@dataclass(frozen=True)
class Samples:
    """Sampled codes [B, N] and the log-probability [B, N] each had under the distribution it was drawn from."""

    codes: torch.Tensor
    logprobs: torch.Tensor


@dataclass
class DecodeState:
    """Everything one decode step reads and writes, at fixed addresses so a CUDA graph can replay it."""

    batch: PromptBatch
    cache: KVCache
    codes: torch.Tensor
    logprobs: torch.Tensor
    noise: torch.Tensor
    seen: torch.Tensor
    step: torch.Tensor
    graphs: StepGraphs | None


def _shape_key(batch: PromptBatch, num_codes: int) -> tuple:
    """Shapes and modes a captured graph depends on."""
    return (batch.rows, batch.ids.shape[1], num_codes, batch.with_uncond, batch.modes)


class Sampler:
    """Decodes codes for many requests at once; on CUDA each decode step is a replayed CUDA graph."""

    def __init__(self, model: SimpleARModel, cuda_graphs: bool | None = None, kv_bucket: int = 512) -> None:
        self.model = model
        self.decoder = Decoder(model.lm, model.vocab)
        self.device = model.lm.device
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.kv_bucket = kv_bucket
        self._state: DecodeState | None = None
        self._key: tuple | None = None

    def reload_weights(self) -> None:
        """Take the model's current weights: the decoder keeps fused copies, so rebuild it and drop captured graphs."""
        self.decoder = Decoder(self.model.lm, self.model.vocab)
        self._state, self._key = None, None

    def generate(self, requests: list[Request], num_codes: int, progress: bool = False) -> torch.Tensor:
        """Codes [len(requests), num_codes], each request drawn with its own seed, CFG scale and filters."""
        return self.sample(requests, num_codes, progress).codes

    @torch.inference_mode()
    def sample(self, requests: list[Request], num_codes: int, progress: bool = False) -> Samples:
        """Codes and their log-probabilities, each request drawn with its own seed, CFG scale and filters."""
        batch = self._batch(requests, num_codes, pad_multiple=16 if self.cuda_graphs else 1)
        state = self._prepare(batch, num_codes)
        width = batch.ids.shape[1]
        cols = torch.arange(width, device=self.device).expand(batch.rows, -1)
        logits = self.decoder.forward(batch.ids, batch.positions, cols, state.cache, width, batch.real)
        state.codes[:, 0], state.logprobs[:, 0] = self._pick(batch, logits[:, -1], state.noise[:, 0], state.seen)
        state.step.fill_(1)
        for t in tqdm(range(1, num_codes), desc="decode", unit="tok", disable=not progress, leave=False):
            kv_len = self._attention_length(width + t, state.cache.max_len)
            if state.graphs is None:
                self._step(state, kv_len)
            else:
                state.graphs.run(kv_len, partial(self._step, state, kv_len))
        return Samples(state.codes.to("cpu", copy=True), state.logprobs.to("cpu", copy=True))

    @torch.inference_mode()
    def generate_sjd(self, requests: list[Request], num_codes: int, window: int = 16) -> tuple[torch.Tensor, SJDStats]:
        """Codes by speculative Jacobi decoding: the same distribution as `generate`, fewer forward passes."""
        batch = self._batch(requests, num_codes)
        if batch.modes.penalized:
            raise ValueError("speculative Jacobi decoding applies no repetition penalty; set it to 1 or decode "
                             "without SJD")
        return jacobi_decode(self.decoder, self.model.vocab, batch, num_codes, window)

    def _batch(self, requests: list[Request], num_codes: int, pad_multiple: int = 1) -> PromptBatch:
        """The prompt batch, refusing prompts whose codes would run past the model's positions."""
        batch = build_batch(self.model, requests, self.device, pad_multiple)
        limit = self.model.lm.config.max_position_embeddings
        longest = int(batch.lengths.max())
        if longest + num_codes > limit:
            too_long = f"a prompt of {longest} tokens plus {num_codes} codes"
            raise ValueError(f"{too_long} exceeds the model's {limit} positions")
        return batch

    def _attention_length(self, needed: int, max_len: int) -> int:
        """Keys a step attends over: exactly those filled, or a bucket of them when steps are replayed graphs."""
        if not self.cuda_graphs:
            return needed
        return min(-(-needed // self.kv_bucket) * self.kv_bucket, max_len)

    def _prepare(self, batch: PromptBatch, num_codes: int) -> DecodeState:
        """A decode state for this batch, reusing the previous one (and its graphs) when the shapes match."""
        noise = uniform(batch.seeds[:, None], torch.arange(num_codes, device=self.device))
        key = _shape_key(batch, num_codes)
        if self._state is not None and self._key == key:
            _copy_into(self._state.batch, batch)
            self._state.noise.copy_(noise)
            self._state.seen.zero_()
            return self._state
        self._state = None
        self._state = DecodeState(
            batch=batch,
            cache=self.decoder.new_cache(batch.rows, batch.ids.shape[1] + num_codes),
            codes=torch.zeros(batch.size, num_codes, dtype=torch.long, device=self.device),
            logprobs=torch.zeros(batch.size, num_codes, dtype=torch.float32, device=self.device),
            noise=noise,
            seen=torch.zeros(batch.size, self.model.vocab.codebook_size, dtype=torch.bool, device=self.device),
            step=torch.zeros((), dtype=torch.long, device=self.device),
            graphs=StepGraphs() if self.cuda_graphs else None,
        )
        self._key = key
        return self._state

    def _step(self, state: DecodeState, kv_len: int) -> None:
        """Feed the last code, sample the next one; only device ops, so it can be captured as a graph."""
        b, t = state.batch, state.step
        previous = state.codes.index_select(1, t.view(1) - 1)
        ids = (previous + self.model.vocab.offset).repeat(b.rows // b.size, 1)
        positions = (b.lengths + (t - 1))[:, None]
        cols = (t + (b.ids.shape[1] - 1)).expand(b.rows, 1)
        logits = self.decoder.forward(ids, positions, cols, state.cache, kv_len)
        code, logprob = self._pick(b, logits[:, 0], state.noise.index_select(1, t.view(1)).squeeze(1), state.seen)
        state.codes.index_copy_(1, t.view(1), code[:, None])
        state.logprobs.index_copy_(1, t.view(1), logprob[:, None])
        t.add_(1)

    @staticmethod
    def _pick(
        batch: PromptBatch, logits: torch.Tensor, noise: torch.Tensor, seen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided, filtered draw of one code per request from code logits [rows, codes], and its log-probability.

        A repetition penalty acts on the conditional rows' logits of the codes already drawn, before CFG (as
        transformers' processor does before upstream's CFG processor); `seen` [B, codes] records the draws.
        """
        if batch.modes.penalized:
            cond = repetition_penalized(logits[: batch.size], seen, batch.repetition_penalty)
            logits = torch.cat([cond, logits[batch.size :]])
        logprobs = guided_logprobs(logits, batch.cfg_scale, batch.with_uncond)
        probs = target_probs(logprobs, batch.temperature, batch.top_k, batch.top_p, batch.modes)
        code = categorical(probs, noise)
        if batch.modes.penalized:
            seen.scatter_(1, code[:, None], True)
        return code, (probs.gather(1, code[:, None]).squeeze(1) / probs.sum(dim=-1)).log()


def _copy_into(static: PromptBatch, new: PromptBatch) -> None:
    """Copy a batch's tensors into the static batch a captured graph reads, keeping its addresses."""
    for name, value in vars(new).items():
        if isinstance(value, torch.Tensor):
            getattr(static, name).copy_(value)


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
