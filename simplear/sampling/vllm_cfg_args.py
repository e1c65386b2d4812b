"""The per-request `extra_args` that tell vLLM's CFG processor and pair scheduler which row is whose partner."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

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
