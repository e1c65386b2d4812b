"""CFG pairs inside vLLM: a logits processor guides both rows of a pair alike, a scheduler admits them together.

The processor (V1 `LogitsProcessor`): for every pair in the batch it computes the original CFG, `u + s * (c - u)`
on the log-softmax of the code slice (as `sampler.guided_logprobs` does), writes the result into both rows and
-inf everywhere outside the code range; a repetition penalty acts first on the conditional row's logits of the
codes it already drew. Both requests carry the same seed, so vLLM's sampler draws the same code for both and the
two sequences stay identical token for token. A pair whose rows are not both in the batch with the same number of
generated tokens was admitted apart (or preempted apart): its guidance would be wrong, so both rows are forced
to emit their abort token, which stops them, and the engine fails that pair instead of returning it.

The schedulers: vLLM's own scheduler admits waiting requests one by one, so the unconditional partner can start a
step after its conditional row (it arrived a moment later, or the token, seat or KV-block budget ran out between
them); CFG for that pair is then silently wrong. Before each step these schedulers hide from the waiting queue every
request whose partner has not arrived and every pair beyond a conservative estimate of what fits this step,
let vLLM schedule the rest, and put the hidden requests back in order. A pair that still ends up apart
(preemption of one row) is left to the processor, which aborts it, and is counted here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from vllm import SamplingParams
from vllm.config import VllmConfig
from vllm.logger import init_logger
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from simplear.sampling.distribution import repetition_penalized
from simplear.sampling.vllm.engine import CfgRow, cfg_row

logger = init_logger(__name__)


@dataclass(frozen=True)
class _Row:
    """A batch row under CFG: its contract and a live reference to its generated tokens."""

    cfg: CfgRow
    output: list[int]


@dataclass
class _Plan:
    """What one step does to the rows of one code range: guided pairs, plain solo rows, and aborted rows."""

    cond: list[int]
    uncond: list[int]
    scales: list[float]
    solo: list[int]


class CfgPairProcessor(LogitsProcessor):
    """Guides each CFG pair jointly, confines every managed row to the code range, aborts split pairs."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Reject malformed CFG extra_args at the engine boundary (a 400 in vLLM's own server)."""
        cfg_row(sampling_params.extra_args)

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        self.rows: dict[int, _Row] = {}
        self.device = device

    def is_argmax_invariant(self) -> bool:
        """CFG changes the argmax, so greedy requests must see it too."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track which batch index holds which CFG row as requests join, leave and move."""
        process_dict_updates(self.rows, batch_update, _new_row)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Write guided log-probabilities into every intact pair and abort tokens into every split one."""
        if not self.rows:
            return logits
        plans, broken = self._plan()
        for (start, end), plan in plans.items():
            self._guide(logits, start, end, plan)
        for index in broken:
            logits[index] = float("-inf")
            logits[index, self.rows[index].cfg.abort_token] = 0.0
        return logits

    def _plan(self) -> tuple[dict[tuple[int, int], _Plan], list[int]]:
        """Group rows by code range into pairs and solo rows; rows whose partner is absent or out of step are broken."""
        by_pair: dict[str, dict[str, int]] = defaultdict(dict)
        for index, row in self.rows.items():
            by_pair[row.cfg.pair][row.cfg.role] = index
        plans: dict[tuple[int, int], _Plan] = {}
        broken: list[int] = []
        for members in by_pair.values():
            first = self.rows[next(iter(members.values()))].cfg
            plan = plans.setdefault((first.code_start, first.code_end), _Plan([], [], [], []))
            if "solo" in members and len(members) == 1:
                plan.solo.append(members["solo"])
                continue
            cond, uncond = members.get("cond"), members.get("uncond")
            if cond is None or uncond is None or len(members) != 2 or (
                len(self.rows[cond].output) != len(self.rows[uncond].output)
            ):
                broken.extend(members.values())
                continue
            plan.cond.append(cond)
            plan.uncond.append(uncond)
            plan.scales.append(self.rows[cond].cfg.scale)
        return plans, broken

    def _guide(self, logits: torch.Tensor, start: int, end: int, plan: _Plan) -> None:
        """Replace the managed rows of one code range with guided (pairs) or plain (solo) code log-probabilities."""
        rows = plan.cond + plan.uncond + plan.solo
        if not rows:
            return
        index = torch.tensor(rows, device=logits.device)
        logp = self._penalized(logits[index, start:end].float(), rows, len(plan.cond), start).log_softmax(dim=-1)
        pairs = len(plan.cond)
        if pairs:
            cond, uncond = logp[:pairs], logp[pairs : 2 * pairs]
            scale = torch.tensor(plan.scales, device=logits.device, dtype=logp.dtype)[:, None]
            guided = cond + (scale - 1.0) * (cond - uncond)
            logp = torch.cat([guided, guided, logp[2 * pairs :]])
        logits[index] = float("-inf")
        logits[index, start:end] = logp.to(logits.dtype)

    def _penalized(self, code_logits: torch.Tensor, rows: list[int], pairs: int, start: int) -> torch.Tensor:
        """The code logits with each conditional and solo row's repetition penalty on the codes it drew."""
        penalties = [1.0 if k in range(pairs, 2 * pairs) else self.rows[row].cfg.repetition_penalty
                     for k, row in enumerate(rows)]
        if all(p == 1.0 for p in penalties):
            return code_logits
        seen = torch.zeros_like(code_logits, dtype=torch.bool)
        for k, row in enumerate(rows):
            drawn = [t - start for t in self.rows[row].output if start <= t < start + code_logits.shape[1]]
            seen[k, drawn] = True
        return repetition_penalized(code_logits, seen, torch.tensor(penalties, device=code_logits.device))


def _new_row(params: SamplingParams, prompt_ids: list[int] | None, output_ids: list[int]) -> _Row | None:
    """The tracked state of a request joining the batch, None for requests without CFG extra_args."""
    cfg = cfg_row(params.extra_args)
    return None if cfg is None else _Row(cfg, output_ids)



@dataclass
class _Budget:
    """What is left this step for newly admitted requests: sequence seats, tokens and free KV blocks."""

    seats: int
    tokens: int
    blocks: int

    def take(self, seats: int, tokens: int, blocks: int) -> bool:
        """Reserve the cost of one admission unit if it fits, else leave the budget unchanged; True when it fit."""
        if seats > self.seats or tokens > self.tokens or blocks > self.blocks:
            return False
        self.seats, self.tokens, self.blocks = self.seats - seats, self.tokens - tokens, self.blocks - blocks
        return True


class PairAdmission:
    """Mixin for a vLLM Scheduler: pairs are admitted together and whole; pairs seen admitted apart are counted."""

    pairs_admitted_apart = 0

    def schedule(self, *args: object, **kwargs: object) -> SchedulerOutput:
        """vLLM's schedule() over a waiting queue holding only what can be admitted pair-wise this step."""
        held = self._hold_back()
        try:
            output = super().schedule(*args, **kwargs)
        finally:
            if held:
                self.waiting.prepend_requests(reversed(held))
        self._count_apart(output)
        return output

    def _hold_back(self) -> list[Request]:
        """Remove from the waiting queue, and return in queue order, every request not to be admitted this step."""
        waiting = list(self.waiting)
        if not waiting:
            return []
        by_key = {(row.pair, row.role): request for request in waiting if (row := _row(request)) is not None}
        budget = self._budget()
        admitted: set[str] = set()
        full = False
        for request in waiting:
            if full or request.request_id in admitted:
                continue
            row = _row(request)
            unit = [request]
            if _needs_partner(request, row):
                partner = by_key.get((row.pair, row.partner_role))
                if partner is None:
                    continue
                unit.append(partner)
            if not budget.take(len(unit), sum(r.num_tokens for r in unit), sum(self._blocks(r) for r in unit)):
                full = True
                continue
            admitted.update(r.request_id for r in unit)
        held = [request for request in waiting if request.request_id not in admitted]
        if held:
            self.waiting.remove_requests(held)
        return held

    def _budget(self) -> _Budget:
        """Seats, tokens and blocks left after every running request takes its share of this step."""
        running_tokens = sum(
            max(r.num_tokens_with_spec + r.num_output_placeholders - r.num_computed_tokens, 0) for r in self.running
        )
        seats = min(self.max_num_running_reqs, self.max_num_active_reqs) - len(self.running)
        tokens = min(self.max_num_scheduled_tokens, self.scheduler_config.max_num_batched_tokens) - running_tokens
        blocks = self.kv_cache_manager.block_pool.get_num_free_blocks() - len(self.running)
        return _Budget(seats=seats, tokens=tokens, blocks=blocks)

    def _blocks(self, request: Request) -> int:
        """KV blocks a request's whole prompt and first sampled token need, ignoring prefix-cache hits."""
        return -(-(request.num_tokens + 1 + self.num_lookahead_tokens) // self.block_size)

    def _count_apart(self, output: SchedulerOutput) -> None:
        """Count (and log) pairs of which only one row, or a partial prompt, was admitted this step."""
        new = {data.req_id for data in output.scheduled_new_reqs}
        keys = {}
        for req_id in new:
            request = self.requests[req_id]
            row = _row(request)
            if _needs_partner(request, row):
                keys[(row.pair, row.role)] = request
        for (pair, role), request in keys.items():
            partner = keys.get((pair, _row(request).partner_role))
            if role == "uncond" and partner is not None:
                continue
            if partner is None or not (_whole(request) and _whole(partner)):
                self.pairs_admitted_apart += 1
                logger.error("CFG pair %s admitted apart (one row alone or cut); it will be aborted", pair)


def _row(request: Request) -> CfgRow | None:
    """The CFG contract a request carries, if any."""
    return cfg_row(request.sampling_params.extra_args) if request.sampling_params is not None else None


def _whole(request: Request) -> bool:
    """True when a request's whole prompt has been scheduled."""
    return request.num_computed_tokens >= request.num_tokens


def _needs_partner(request: Request, row: CfgRow | None) -> bool:
    """True for a fresh conditional or unconditional row: it may only start together with its partner."""
    return row is not None and row.partner_role is not None and not row.admit_alone and request.num_output_tokens == 0


class PairScheduler(PairAdmission, Scheduler):
    """vLLM's scheduler with pair-wise admission (synchronous scheduling: the CPU platform's choice)."""


class AsyncPairScheduler(PairAdmission, AsyncScheduler):
    """vLLM's async scheduler with pair-wise admission (the GPU default)."""
