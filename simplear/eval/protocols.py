"""Evaluation protocols: how a benchmark prompt becomes the requests whose images are scored.

`fixed` (ours, the shapes demo's): the caption behind the generation prefix "A highly realistic image of ", the
sampling settings as given (`--cfg-scale`, `--negative-prompt`, ...).

`simplear`: the protocol behind SimpleAR's published GenEval / DPG scores, wdrink/SimpleAR
scripts/eval/bench_geneval.sh and bench_dpg.sh running simpar/eval/model_t2i.py (its EvalT2IDataset in
simpar/train/t2i_data.py builds the prompts with `preprocess_t2i` of simpar/train/preprocess.py):
- each prompt gets a prefix drawn at random from the training list PROMPTS_GEN, and its unconditional row is
  `<|t2i|>` + another random prefix + "Aerial view, aerial view, overexposed, ..." + `<|soi|>`;
- the prefixes are drawn once per prompt, so its 4 images share them;
- a GenEval entry's `reprompt` replaces its `prompt` where present (EvalT2IDataset's geneval branch; DPG prompts
  are plain text files);
- CFG 6, temperature 1, top-k 64,000, top-p 1, 4 images per prompt (simplear.config.EvaluateConfig checks and
  applies them), and the checkpoint's generation_config.json (its repetition penalty) as transformers' `generate`
  applies it (simplear.model.generation_config).
Upstream draws the prefixes from Python's global generator (seeded once, shared by DataLoader workers); here they
come from a generator seeded by (seed, prompt index), so a run is reproducible and independent of ranks and batches.
"""

from __future__ import annotations

import random

from simplear.config import SamplingConfig
from simplear.config.runs import EvalProtocol as Protocol
from simplear.model.prompt import GENERATION_PREFIX, TRAIN_PREFIXES
from simplear.sampling.batch import Request

SIMPLEAR_PREFIXES: tuple[str, ...] = TRAIN_PREFIXES[2:]
"""PROMPTS_GEN of upstream's current simpar/train/preprocess.py: the training prefixes without "" and "a photo of"."""
SIMPLEAR_NEGATIVE_TEXT = (
    "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, "
    "bad eyes, bad limbs, distortion"
)


def benchmark_caption(protocol: Protocol, entry: dict) -> str:
    """The text a GenEval entry is generated from: its `reprompt` under `simplear` where it has one, else `prompt`."""
    if protocol == "simplear" and isinstance(entry.get("reprompt"), str) and entry["reprompt"].strip():
        return entry["reprompt"]
    return entry["prompt"]


def prompt_requests(protocol: Protocol, caption: str, index: int, n: int, sampling: SamplingConfig) -> list[Request]:
    """The `n` requests of prompt number `index`, with seeds `seed + index * n + j`."""
    seeds = [sampling.seed + index * n + j for j in range(n)]
    if protocol == "fixed":
        return [Request(caption, sampling.model_copy(update={"seed": seed}), GENERATION_PREFIX) for seed in seeds]
    rng = random.Random(f"simplear-eval/{sampling.seed}/{index}")
    prefix = rng.choice(SIMPLEAR_PREFIXES)
    negative = rng.choice(SIMPLEAR_PREFIXES) + SIMPLEAR_NEGATIVE_TEXT
    return [Request(caption, sampling.model_copy(update={"seed": seed, "negative_prompt": negative}), prefix)
            for seed in seeds]
