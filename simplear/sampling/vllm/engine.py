"""The vLLM SamplingEngine: CFG pairs decoded inside vLLM, the per-request pair contract, weights reloaded in place.

Each image is two vLLM requests with one seed, the conditional prompt and the negative prompt, tied together by
`extra_args` (CfgRow). The CFG processor writes the guided logits into both rows and the pair scheduler
admits both together, so both rows sample the same code each step. AsyncLLM runs on an event loop in a
background thread; `sample`, `generate` and the weight methods block their caller, so many threads can call
them at once and vLLM batches their requests. Satisfies simplear.sampling.engine.SamplingEngine.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

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

T = TypeVar("T")
PROCESSOR = "simplear.sampling.vllm.cfg_pairs:CfgPairProcessor"
WORKER_EXTENSION = "simplear.sampling.vllm.engine.TiedHeadReload"
SCHEDULERS = {
    ("pair", False): "simplear.sampling.vllm.cfg_pairs.PairScheduler",
    ("pair", True): "simplear.sampling.vllm.cfg_pairs.AsyncPairScheduler",
}

KEY = "simplear_cfg"
Role = Literal["cond", "uncond", "solo"]
ROLES: tuple[str, ...] = ("cond", "uncond", "solo")


@dataclass(frozen=True)
class CfgRow:
    """One vLLM request's part in CFG: its pair, its role, the guidance scale and the code range it may write.

    `solo` rows (CFG scale 1) have no partner; `abort_token` is what a row of a split pair is forced to emit
    (it is one of the request's stop tokens); `repetition_penalty` acts on the conditional (or solo) row's logits
    of the codes it already drew, before CFG; `admit_alone` lets the pair scheduler admit the row without its
    partner, which only fault-injection tests ask for.
    """

    pair: str
    role: Role
    scale: float
    code_start: int
    code_end: int
    abort_token: int
    repetition_penalty: float = 1.0
    admit_alone: bool = False

    def to_extra_args(self) -> dict[str, Any]:
        """The `SamplingParams.extra_args` carrying this row."""
        return {KEY: asdict(self)}

    @property
    def partner_role(self) -> Role | None:
        """The role of the row this one must run with (None for a solo row)."""
        return {"cond": "uncond", "uncond": "cond"}.get(self.role)


def cfg_row(extra_args: dict[str, Any] | None) -> CfgRow | None:
    """The CfgRow in a request's extra_args, None when it carries none; ValueError when it is malformed."""
    raw = (extra_args or {}).get(KEY)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"extra_args[{KEY!r}] must be an object, got {type(raw).__name__}")
    try:
        row = CfgRow(**raw)
    except TypeError as err:
        raise ValueError(f"extra_args[{KEY!r}] is malformed: {err}") from None
    if row.role not in ROLES:
        raise ValueError(f"extra_args[{KEY!r}].role must be one of {ROLES}, got {row.role!r}")
    if not 0 <= row.code_start < row.code_end:
        raise ValueError(f"extra_args[{KEY!r}] code range [{row.code_start}, {row.code_end}) is empty")
    if not row.repetition_penalty > 0:
        raise ValueError(f"extra_args[{KEY!r}].repetition_penalty must be positive, got {row.repetition_penalty}")
    if row.code_start <= row.abort_token < row.code_end:
        raise ValueError(f"extra_args[{KEY!r}].abort_token {row.abort_token} lies inside the code range")
    return row


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

    def __init__(self, model_dir: str | Path, config: VllmEngineConfig, device: str = "cpu",
                 owned_dir: tempfile.TemporaryDirectory | None = None) -> None:
        self.model_dir = Path(model_dir)
        self._owned_dir = owned_dir
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
        """Codes [len(requests), num_codes] on the CPU."""
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
        """Stop the engine core (from its own loop, where its output handler runs), then the loop thread; remove
        the temporary checkpoint copy the engine was given to own (`owned_dir`)."""
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if self._owned_dir is not None:
            self._owned_dir.cleanup()

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


class TiedHeadReload:
    """vLLM worker extension (mixed into vLLM's Worker via `worker_extension_cls`, called through `collective_rpc`).

    vLLM's in-place reload (and its NCCL weight transfer) rebuilds each layer from the weights it receives. A
    checkpoint with tied embeddings (all SimpleAR checkpoints) carries no `lm_head.weight`, so the head would keep
    the old tensor; these methods point it back at the new embedding and redo its kernel preparation (the CPU GEMM
    packing), so the next-token distribution is the new checkpoint's.
    """

    def reload_checkpoint(self, weights_path: str) -> None:
        """Reload every weight from a Hugging Face directory, then re-tie the head."""
        self.reload_weights(weights_path=weights_path)
        self.tie_lm_head()

    def tie_lm_head(self) -> None:
        """Share the embedding with the LM head again (when the model ties them) and re-prepare the head."""
        model = self.model_runner.get_model()
        if not getattr(model.config, "tie_word_embeddings", False):
            return
        model.lm_head.weight = model.model.embed_tokens.weight
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)
