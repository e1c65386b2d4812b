"""vLLM V1 schedulers that admit the two requests of a CFG pair in the same step, each prompt whole, or neither.

vLLM's own scheduler admits waiting requests one by one, so the unconditional partner can start a step after
its conditional row (it arrived a moment later, or the token, seat or KV-block budget ran out between them);
CFG for that pair is then silently wrong. Before each step these schedulers hide from the waiting queue every
request whose partner has not arrived and every pair beyond a conservative estimate of what fits this step,
let vLLM schedule the rest, and put the hidden requests back in order. A pair that still ends up apart
(preemption of one row) is left to the CFG processor, which aborts it, and is counted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllm.logger import init_logger
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request

from simplear.sampling.vllm_cfg_args import CfgRow, cfg_row

logger = init_logger(__name__)


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
