"""vLLM V1 logits processor for CFG: each conditional row and its unconditional partner get the same guided logits.

For every pair in the batch it computes the original CFG, `u + s * (c - u)` on the log-softmax of the code
slice (as `processing.guided_logprobs` does), writes the result into both rows and -inf everywhere outside the
code range; a repetition penalty acts first on the conditional row's logits of the codes it already drew.
Both requests carry the same seed, so vLLM's sampler draws the same code for both and the two sequences stay
identical token for token. A pair whose rows are not both in the batch with the same number of
generated tokens was admitted apart (or preempted apart): its guidance would be wrong, so both rows are forced
to emit their abort token, which stops them, and the engine fails that pair instead of returning it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from vllm import SamplingParams
from vllm.config import VllmConfig
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from simplear.sampling.processing import repetition_penalized
from simplear.sampling.vllm_cfg_args import CfgRow, cfg_row


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
