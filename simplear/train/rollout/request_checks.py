"""A /generate body to sampler requests, or a 400 that says what is wrong with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from simplear.config import RolloutServerConfig, SamplingConfig
from simplear.model.prompt import NEGATIVE_TEXT
from simplear.sampling.batch import Request
from simplear.train.rollout.http_schemas import GenerateRequest
from simplear.train.rollout.rollout_engine import RolloutEngine


class BadRequest(ValueError):
    """A request the server refuses: answered 400 with this message."""


def to_requests(body: GenerateRequest, engine: RolloutEngine, config: RolloutServerConfig) -> list[Request]:
    """One Request per image, prompt-major, each with its own seed; BadRequest on anything out of bounds."""
    images = len(body.prompts) * body.n
    if images > config.max_images_per_request:
        raise BadRequest(f"{images} images requested; at most {config.max_images_per_request} per request")
    if body.seeds is not None and len(body.seeds) != images:
        raise BadRequest(f"seeds has {len(body.seeds)} entries but {len(body.prompts)} prompts x n={body.n} "
                         f"make {images} images")
    if (body.return_uncond or body.force_split_s) and engine.name != "vllm":
        raise BadRequest(f"return_uncond and force_split_s only apply to the vllm engine; this is {engine.name}")
    _check_lengths(body, engine, config)
    seeds = body.seeds or [body.seed + k for k in range(images)]
    try:
        params = [SamplingConfig(cfg_scale=body.cfg_scale, temperature=body.temperature, top_k=body.top_k,
                                 top_p=body.top_p, seed=seed, negative_prompt=body.negative_prompt,
                                 repetition_penalty=body.repetition_penalty) for seed in seeds]
    except ValidationError as err:
        raise BadRequest(describe(err.errors())) from None
    return [Request(prompt=body.prompts[k // body.n], params=params[k], prefix=body.prefix) for k in range(images)]


def _check_lengths(body: GenerateRequest, engine: RolloutEngine, config: RolloutServerConfig) -> None:
    """Prompts non-empty and short enough that prompt + codes fit the model's positions."""
    texts = [*body.prompts, NEGATIVE_TEXT if body.negative_prompt is None else body.negative_prompt]
    for index, text in enumerate(texts):
        name = "negative_prompt" if index == len(body.prompts) else f"prompts[{index}]"
        if index < len(body.prompts) and not text.strip():
            raise BadRequest(f"{name} is empty")
        if len(text) > config.max_prompt_chars:
            raise BadRequest(f"{name} has {len(text)} characters; at most {config.max_prompt_chars}")
        needed = engine.prompt_tokens(text) + body.num_codes
        if needed > engine.max_positions:
            raise BadRequest(f"{name} takes {needed - body.num_codes} tokens; with num_codes={body.num_codes} that "
                             f"is {needed} positions, the model has {engine.max_positions}")


def describe(errors: Sequence[dict[str, Any]]) -> str:
    """Pydantic / FastAPI validation errors as one line: `field: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors)
