"""trl's GRPOTrainer optimising the policy that sampled the rollouts, in a prompt order that a resume replays.

The policy GRPO optimises is the one that sampled the rollouts: plain (no CFG) or guided (the CFG distribution).

trl's GRPOTrainer scores completions with the conditional model over its whole vocabulary. Our rollouts are drawn
by the sampler among the visual codes only, with temperature, top-k / top-p and, for `guided`, classifier-free
guidance, so that score is not the sampling distribution. `SampledPolicyTrainer` overrides trl 1.16's one
log-probability method (`_get_per_token_logps_and_entropies`, used for the loss, for pi_old and for the KL
reference) with the sampler's own distribution:

- plain: log_softmax(l_c / T) over the codes, l_c the conditional code logits (upstream's policy: trl 69ad852e's
  vLLM rollouts carry no CFG, and its `_get_per_token_logps` is the conditional model's);
- guided: log_softmax(g / T) with g = l_u + s (l_c - l_u) on code log-softmaxes (`sampler.guided_logprobs`), from
  a forward pass of the conditional row and of the unconditional row `<negative prompt> + codes` that the sampler
  decoded beside it; gradients flow through both rows.

Top-k / top-p keep the codes the sampler kept (chosen without gradient) and renormalise over them, as it does.
The code logits [rows, completion, codes] are materialised per chunk of `batch_size` rows; trl's fused head avoids
that for the full vocabulary, which is not the distribution sampled here.

trl's RepeatSampler draws every epoch's order from one generator that keeps running from epoch to epoch. A run
resumed in a later epoch starts that generator afresh and so trains on other prompts than the run it continues.
Reseeding at `set_epoch`, which the HF Trainer calls before every epoch (the resumed one included), fixes that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler, maybe_gather_lm_head_ctx

from simplear.config import GRPOTrainConfig, SamplingConfig
from simplear.model.prompt import negative_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.model.vocab import VisualVocab
from simplear.sampling.batch import SamplingModes
from simplear.sampling.distribution import guided_logprobs, target_probs


class EpochSeededRepeatSampler(RepeatSampler):
    """RepeatSampler whose shuffle of epoch e comes from a generator seeded with seed + e."""

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for `epoch`."""
        if self.shuffle:
            self.generator.manual_seed(self.seed + epoch)


class ResumableGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose training prompts come in the same order however often the run is resumed."""

    def _get_train_sampler(self, dataset: Dataset | None = None) -> Sampler:
        """trl's repeat sampler (groups, steps per generation, iterations), seeded per epoch."""
        return EpochSeededRepeatSampler(
            data_source=self.train_dataset if dataset is None else dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )


@dataclass(frozen=True)
class SampledPolicy:
    """The distribution the rollouts were drawn from: code range, sampling settings and the unconditional prompt."""

    guided: bool
    vocab: VisualVocab
    sampling: SamplingConfig
    uncond_prompt_ids: tuple[int, ...]
    pad_id: int

    @classmethod
    def of_run(cls, config: GRPOTrainConfig, model: SimpleARModel) -> SampledPolicy:
        """The policy a run samples: its unconditional prompt is the one `sampling.batch` builds for the sampler."""
        uncond = model.encode_prompts([negative_prompt(config.sampling.negative_prompt)])[0]
        return cls(config.policy == "guided", model.vocab, config.sampling, tuple(uncond),
                   model.tokenizer.pad_token_id or 0)

    def token_logprobs(
        self, lm: torch.nn.Module, head: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        completion: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability [B, completion] of each completion code under this policy, and the entropy at each step.

        `lm` is called as the trainer holds it (wrapped for DDP), `head` is the code rows of its LM head.
        """
        codes = (input_ids[:, -completion:] - self.vocab.offset).clamp(0, self.vocab.codebook_size - 1)
        if self.guided:
            input_ids, attention_mask = self._with_uncond_rows(input_ids, attention_mask, completion)
        out = lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1)
        hidden = out.hidden_states[-1][:, -completion - 1 : -1]
        logits = torch.nn.functional.linear(hidden, head).float()
        scale = torch.full((codes.shape[0],), self.sampling.cfg_scale, device=logits.device)
        logp = self._sampled(guided_logprobs(logits, scale, self.guided))
        entropy = -(logp.exp() * logp.masked_fill(logp.isinf(), 0.0)).sum(dim=-1)
        return logp.gather(-1, codes[..., None]).squeeze(-1), entropy

    def _with_uncond_rows(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional rows, then `<negative prompt> + codes` rows, left-padded to one width as the sampler's are."""
        rows = input_ids.shape[0]
        uncond = torch.tensor(self.uncond_prompt_ids, device=input_ids.device).expand(rows, -1)
        uncond_ids = torch.cat([uncond, input_ids[:, -completion:]], dim=1)
        uncond_mask = torch.cat([torch.ones_like(uncond), attention_mask[:, -completion:]], dim=1)
        width = max(input_ids.shape[1], uncond_ids.shape[1])

        def left_pad(t: torch.Tensor, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

        ids = torch.cat([left_pad(input_ids, self.pad_id), left_pad(uncond_ids, self.pad_id)])
        return ids, torch.cat([left_pad(attention_mask, 0), left_pad(uncond_mask, 0)])

    def _sampled(self, logp: torch.Tensor) -> torch.Tensor:
        """The sampler's distribution from (guided) code log-probabilities: temperature, then its top-k / top-p."""
        s = self.sampling
        scaled = logp / s.temperature
        if s.top_k > 0 or s.top_p < 1.0:
            flat = logp.detach().flatten(0, -2)
            n = flat.shape[0]

            def per_row(value: float, dtype: torch.dtype) -> torch.Tensor:
                return torch.full((n,), value, dtype=dtype, device=flat.device)

            modes = SamplingModes(scaled=s.temperature != 1.0, filtered=True, greedy=False)
            kept = target_probs(flat, per_row(s.temperature, torch.float32), per_row(s.top_k, torch.long),
                                per_row(s.top_p, torch.float32), modes) > 0
            scaled = scaled.masked_fill(~kept.view_as(scaled), float("-inf"))
        return scaled.log_softmax(dim=-1)


class SampledPolicyTrainer(ResumableGRPOTrainer):
    """trl's GRPOTrainer (with the resumable prompt order) whose log-probabilities are those of the sampled policy."""

    def __init__(self, *args: Any, policy: SampledPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy

    def _get_per_token_logps_and_entropies(
        self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
        batch_size: int | None = None, compute_entropy: bool = False, compute_aux_loss: bool = False,
        **multimodal: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """Per-token log-probabilities (and entropies) of the completions under the sampled policy, in row chunks."""
        batch_size = batch_size or input_ids.shape[0]
        weight = self.accelerator.unwrap_model(model).get_output_embeddings().weight
        logps, entropies = [], []
        with maybe_gather_lm_head_ctx(weight):
            head = weight[self.policy.vocab.offset : self.policy.vocab.end]
            for start in range(0, input_ids.shape[0], batch_size):
                rows = slice(start, start + batch_size)
                with self.accelerator.autocast():
                    logp, entropy = self.policy.token_logprobs(
                        model, head, input_ids[rows], attention_mask[rows], logits_to_keep
                    )
                logps.append(logp)
                entropies.append(entropy)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None
