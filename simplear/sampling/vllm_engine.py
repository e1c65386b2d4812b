"""Rollouts and served images from vLLM: CFG pairs decoded inside the engine, weights reloaded in place.

Each image is two vLLM requests with one seed, the conditional prompt and the negative prompt, tied together by
`extra_args` (vllm_cfg_args). The CFG processor writes the guided logits into both rows and the pair scheduler
admits both together, so both rows sample the same code each step. AsyncLLM runs on an event loop in a
background thread; `sample`, `generate` and the weight methods block their caller, so many threads can call
them at once and vLLM batches their requests. Satisfies the serve Engine protocol.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoTokenizer

from simplear.config import VllmEngineConfig
from simplear.model.generation_config import read_generation_defaults
from simplear.model.prompt import negative_prompt, t2i_prompt
from simplear.model.simplear_lm import CODEBOOK_KEY, QWEN2_ARCHITECTURE
from simplear.model.vocab import VisualVocab
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Samples
from simplear.sampling.vllm_cfg_args import CfgRow, Role

T = TypeVar("T")
PROCESSOR = "simplear.sampling.vllm_cfg_processor:CfgPairProcessor"
WORKER_EXTENSION = "simplear.sampling.vllm_worker_ext.TiedHeadReload"
SCHEDULERS = {
    ("pair", False): "simplear.sampling.vllm_pair_scheduler.PairScheduler",
    ("pair", True): "simplear.sampling.vllm_pair_scheduler.AsyncPairScheduler",
}


class CfgPairSplit(RuntimeError):
    """CFG pairs whose two rows did not decode in lockstep: their codes are wrong, so they are not returned."""

    def __init__(self, broken: list[str], total: int) -> None:
        super().__init__(
            f"{len(broken)} of {total} CFG pairs did not decode in lockstep (admitted or preempted apart), so their "
            f"guidance is wrong and they are not returned: {', '.join(broken[:8])}"
        )
        self.pairs = len(broken)


@dataclass(frozen=True)
class CfgSamples(Samples):
    """Samples plus the codes each image's unconditional row decoded (equal to `codes` when pairing held)."""

    uncond_codes: torch.Tensor | None = None


@dataclass(frozen=True)
class _Row:
    """One vLLM request of an image: its prompt token ids and CFG role."""

    image: int
    ids: list[int]
    cfg: CfgRow


def read_vocab(model_dir: Path) -> tuple[VisualVocab, int]:
    """Where the codes sit in a checkpoint's vocabulary (as SimpleARModel.load reads it) and its position limit."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    size = getattr(config, CODEBOOK_KEY, None) or config.vocab_size - len(tokenizer)
    return VisualVocab(offset=len(tokenizer), codebook_size=size), int(config.max_position_embeddings)


class VllmEngine:
    """vLLM AsyncLLM with the CFG pair processor and pair scheduler, driven from any thread."""

    name = "vllm"

    def __init__(self, model_dir: str | Path, config: VllmEngineConfig, device: str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        self.config = config
        self.vocab, self.max_positions = read_vocab(self.model_dir)
        self.generation = read_generation_defaults(self.model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.abort_token = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self._counter = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        self.llm = self._run(self._start(device))

    @property
    def vocab_size(self) -> int:
        """Visual codes the model writes."""
        return self.vocab.codebook_size

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the engine's loop and wait for its result in the calling thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _start(self, device: str) -> Any:
        """Build the AsyncLLM on the engine's loop (its output handler lives there)."""
        from vllm.config import WeightTransferConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        cpu = device == "cpu"
        os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
        if cpu:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.config.kv_cache_gib)
        dtype = self.config.dtype if self.config.dtype != "auto" else ("float32" if cpu else "bfloat16")
        args = AsyncEngineArgs(
            model=str(self.model_dir),
            hf_overrides={"architectures": [QWEN2_ARCHITECTURE]},  # released checkpoints name SimpARForCausalLM
            skip_tokenizer_init=True,
            dtype=dtype,
            seed=0,
            max_model_len=self.config.max_model_len or self.max_positions,
            max_num_seqs=self.config.max_num_seqs,
            gpu_memory_utilization=self.config.gpu_memory_utilization,
            enforce_eager=cpu if self.config.enforce_eager is None else self.config.enforce_eager,
            logits_processors=[PROCESSOR],
            logprobs_mode="processed_logprobs",
            scheduler_cls=SCHEDULERS.get((self.config.scheduler, not cpu)),
            weight_transfer_config=WeightTransferConfig(backend="nccl")
            if self.config.weight_transfer == "nccl" else None,
            worker_extension_cls=WORKER_EXTENSION,
            disable_log_stats=True,
        )
        return AsyncLLM.from_engine_args(args)

    def sample(self, requests: list[Request], num_codes: int, stagger_s: float = 0.0) -> CfgSamples:
        """Codes and their log-probabilities under the guided, filtered distribution, one row per request.

        `stagger_s` > 0 is fault injection for tests: every conditional row is added that long before its partner
        and the pair scheduler is told not to wait for it, so pairs split and must fail with CfgPairSplit.
        """
        if not requests:
            raise ValueError("no requests to sample")
        return self._run(self._sample(requests, num_codes, stagger_s))

    def generate(self, requests: list[Request], num_codes: int) -> torch.Tensor:
        """Codes [len(requests), num_codes] on the CPU (the serve Engine protocol)."""
        return self.sample(requests, num_codes).codes

    def prompt_tokens(self, caption: str) -> int:
        """Token count of the formatted prompt, from a private tokenizer copy (safe beside running requests)."""
        return len(self._counter.encode(t2i_prompt(caption), add_special_tokens=False).ids)

    def reload_weights(self, model_dir: str | Path) -> None:
        """Load a saved checkpoint's weights in place and drop cached prefixes; call with no requests in flight."""
        self._run(self._reload(Path(model_dir)))

    def init_weight_transfer(self, init_info: dict[str, Any]) -> None:
        """Join the trainer's NCCL group (rank 0 is the trainer), as vLLM's weight transfer engine does."""
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest

        self._run(self.llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info=init_info)))

    def receive_weights(self, update_info: dict[str, Any]) -> None:
        """Receive one NCCL broadcast of every parameter from the trainer and load it; no requests in flight."""
        from vllm.distributed.weight_transfer.base import WeightTransferUpdateRequest

        async def update() -> None:
            await self.llm.start_weight_update()
            await self.llm.update_weights(WeightTransferUpdateRequest(update_info=update_info))
            await self.llm.finish_weight_update()
            await self.llm.collective_rpc("tie_lm_head")
            await self.llm.reset_prefix_cache()

        self._run(update())

    def shutdown(self) -> None:
        """Stop the engine core (from its own loop, where its output handler runs), then the loop thread."""
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _shutdown(self) -> None:
        """AsyncLLM.shutdown on the loop that owns it."""
        self.llm.shutdown()

    async def _reload(self, model_dir: Path) -> None:
        """Reload on every worker (vLLM's reload_weights plus re-tying the head), then drop the stale prefix cache."""
        await self.llm.collective_rpc("reload_checkpoint", kwargs={"weights_path": str(model_dir)})
        await self.llm.reset_prefix_cache()

    async def _sample(self, requests: list[Request], num_codes: int, stagger_s: float) -> CfgSamples:
        """Add every row (conditional rows first when staggered), wait for all, check each pair, collect."""
        rows = self._rows(requests, admit_alone=stagger_s > 0)
        first = [self._decode(row, requests[row.image], num_codes) for row in rows if row.cfg.role != "uncond"]
        tasks = [asyncio.ensure_future(job) for job in first]
        if stagger_s > 0:
            await asyncio.sleep(stagger_s)
        tasks += [asyncio.ensure_future(self._decode(row, requests[row.image], num_codes))
                  for row in rows if row.cfg.role == "uncond"]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        decoded = {(row.image, row.cfg.role): result for row, result in zip(_ordered(rows), results, strict=True)}
        return self._collect(requests, decoded, num_codes)

    def _rows(self, requests: list[Request], admit_alone: bool) -> list[_Row]:
        """The vLLM requests of a batch: a conditional and an unconditional row per image, one row without CFG."""
        batch = uuid.uuid4().hex
        rows = []
        for image, request in enumerate(requests):
            params = request.params
            penalty = self.generation.repetition_penalty if params.repetition_penalty is None \
                else params.repetition_penalty
            prompt = t2i_prompt(request.prompt, request.prefix)
            roles: list[tuple[Role, str]] = [("solo", prompt)]
            if params.cfg_scale != 1.0:
                roles = [("cond", prompt), ("uncond", negative_prompt(params.negative_prompt))]
            for role, text in roles:
                cfg = CfgRow(pair=f"{batch}-{image}", role=role, scale=params.cfg_scale, code_start=self.vocab.offset,
                             code_end=self.vocab.end, abort_token=self.abort_token, repetition_penalty=penalty,
                             admit_alone=admit_alone)
                ids = self.tokenizer(text, add_special_tokens=False).input_ids
                rows.append(_Row(image=image, ids=ids, cfg=cfg))
        return rows

    async def _decode(self, row: _Row, request: Request, num_codes: int) -> tuple[list[int], list[float]]:
        """One vLLM request to its final token ids and the log-probability of each under the sampled distribution."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = request.params
        sampling = SamplingParams(
            n=1, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p, seed=params.seed,
            max_tokens=num_codes, logprobs=0, stop_token_ids=[self.abort_token], detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY, extra_args=row.cfg.to_extra_args(),
        )
        final = None
        request_id = f"{row.cfg.pair}-{row.cfg.role}"
        async for output in self.llm.generate({"prompt_token_ids": row.ids}, sampling, request_id=request_id):
            final = output
        completion = final.outputs[0]
        tokens = list(completion.token_ids)
        logprobs = [position[token].logprob for position, token in zip(completion.logprobs or [], tokens, strict=False)]
        return tokens, logprobs

    def _collect(
        self, requests: list[Request], decoded: dict[tuple[int, str], tuple[list[int], list[float]]], num_codes: int
    ) -> CfgSamples:
        """Codes, log-probabilities and unconditional codes as tensors; CfgPairSplit names every broken pair."""
        codes = torch.zeros(len(requests), num_codes, dtype=torch.long)
        uncond = torch.zeros_like(codes)
        logprobs = torch.zeros(len(requests), num_codes, dtype=torch.float32)
        broken = []
        for image, request in enumerate(requests):
            cond_tokens, cond_logprobs = decoded.get((image, "cond")) or decoded[(image, "solo")]
            uncond_tokens = decoded[(image, "uncond")][0] if (image, "uncond") in decoded else cond_tokens
            if not self._intact(cond_tokens, uncond_tokens, num_codes):
                broken.append(f"#{image} ({len(cond_tokens)} conditional / {len(uncond_tokens)} unconditional codes)")
                continue
            codes[image] = torch.tensor(cond_tokens) - self.vocab.offset
            uncond[image] = torch.tensor(uncond_tokens) - self.vocab.offset
            if request.params.temperature > 0:
                logprobs[image] = torch.tensor(cond_logprobs, dtype=torch.float32)
        if broken:
            raise CfgPairSplit(broken, len(requests))
        return CfgSamples(codes=codes, logprobs=logprobs, uncond_codes=uncond)

    def _intact(self, cond: list[int], uncond: list[int], num_codes: int) -> bool:
        """True when both rows produced num_codes identical in-range codes."""
        in_range = all(self.vocab.offset <= t < self.vocab.end for t in cond)
        return len(cond) == num_codes and cond == uncond and in_range


def _ordered(rows: list[_Row]) -> list[_Row]:
    """Rows in the order their tasks were created: conditional and solo rows, then unconditional ones."""
    return [row for row in rows if row.cfg.role != "uncond"] + [row for row in rows if row.cfg.role == "uncond"]
