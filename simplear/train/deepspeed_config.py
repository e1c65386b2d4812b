"""The DeepSpeed ZeRO-2 and ZeRO-3 configs shipped in the package ("auto" values are filled by the HF Trainer)."""

from __future__ import annotations

import json
from importlib import resources


def deepspeed_config(zero_stage: int) -> dict:
    """A fresh copy of the packaged DeepSpeed config for ZeRO stage 2 or 3."""
    if zero_stage not in (2, 3):
        raise ValueError(f"no packaged DeepSpeed config for ZeRO stage {zero_stage}; use 2 or 3")
    return json.loads(resources.files("simplear.train").joinpath("deepspeed", f"zero{zero_stage}.json").read_text())
