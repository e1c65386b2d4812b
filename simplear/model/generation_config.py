"""A checkpoint's generation_config.json, honoured where upstream's Hugging Face path honours it.

Upstream samples a checkpoint with `SimpARForCausalLM.generate_visual(...)`, i.e. transformers' `generate` with the
model's generation_config.json as defaults under the keyword arguments its scripts pass (wdrink/SimpleAR
simpar/eval/model_t2i.py, generate.py, docs/PLAY.md: do_sample, temperature, top_k, top_p, max_new_tokens,
use_cache). Of the file's other settings, transformers applies `repetition_penalty` to the conditional row's raw
logits over prompt and generated tokens, before the CFG processor (RepetitionPenaltyLogitsProcessor comes first in
`_get_logits_processor`): our samplers apply it the same way, over the generated codes. Settings the explicit
arguments override, token ids (codes are never an end-of-sequence token) and output bookkeeping change nothing.
Any other setting that differs from transformers' default would change upstream's images and is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import GenerationConfig

FILE = "generation_config.json"
OVERRIDDEN = ("do_sample", "temperature", "top_k", "top_p", "max_new_tokens", "max_length", "use_cache")
"""Set by upstream's calls themselves, so the file's values never apply."""
INERT = (
    "_from_model_config", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
    "decoder_start_token_id", "min_length", "min_new_tokens", "num_return_sequences", "output_attentions",
    "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate", "cache_implementation",
    "cache_config", "compile_config", "disable_compile", "prefill_chunk_size",
)
"""Token ids, lengths only an end-of-sequence token could cut, and output or cache bookkeeping."""


@dataclass(frozen=True)
class GenerationDefaults:
    """The sampling settings a checkpoint carries that upstream's generation applies: its repetition penalty."""

    repetition_penalty: float = 1.0


def read_generation_defaults(model_dir: Path) -> GenerationDefaults:
    """The defaults in `model_dir/generation_config.json` (none without one); ValueError for settings not applied."""
    path = model_dir / FILE
    if not path.is_file():
        return GenerationDefaults()
    settings = json.loads(path.read_text())
    defaults = GenerationConfig().to_dict()
    refused = {
        key: value for key, value in settings.items()
        if key in defaults and key not in (*OVERRIDDEN, *INERT, "repetition_penalty") and value != defaults[key]
    }
    if refused:
        listed = ", ".join(f"{key}={value!r}" for key, value in sorted(refused.items()))
        raise ValueError(f"{path} sets {listed}, which upstream's generation applies and ours cannot; "
                         f"remove them from the file to sample without them")
    penalty = float(settings.get("repetition_penalty") or 1.0)
    if penalty <= 0:
        raise ValueError(f"{path}: repetition_penalty must be positive, not {penalty}")
    return GenerationDefaults(repetition_penalty=penalty)
