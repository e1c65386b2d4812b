"""Request validation of the v1, v2 and OpenAI bodies: seeds, shared parameters, limits and their messages."""

from __future__ import annotations

import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from simplear.config import PRESETS, ServeLimits
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.engine import TorchEngine
from simplear.serve.schemas import RANDOM_SEED_BOUND, RequestValidator
from simplear.serve.v2_codec import parse_v2


@pytest.fixture(scope="module")
def validator() -> RequestValidator:
    """Validator of a tiny server serving 64 and 32 px, counting tokens with the real engine."""
    engine = TorchEngine(SimpleARModel.random_init(PRESETS["tiny"]))
    limits = ServeLimits(max_images_per_request=4, max_prompt_chars=100, max_prompt_tokens=40, resolutions=(64, 32))
    return RequestValidator(limits, (64, 32), engine.prompt_tokens, PRESETS["tiny"].vision.codebook_size)


def v2(*inputs: InferInput, parameters: dict | None = None, outputs: list[str] | None = None) -> InferRequest:
    """A v2 request as KServe decodes it."""
    wanted = [RequestedOutput(name) for name in outputs] if outputs else None
    return InferRequest("simplear", list(inputs), parameters=parameters, request_outputs=wanted)


def prompts(*texts: str, parameters: dict | None = None) -> InferInput:
    """The v2 prompt input."""
    return InferInput("prompt", [len(texts)], "BYTES", list(texts), parameters=parameters)


def test_v1_instances_keep_their_order_parameters_and_resolution(validator: RequestValidator) -> None:
    """One spec per instance, with its prompt, parameters, seed and resolution (default the first served)."""
    specs = validator.v1({"instances": [
        {"prompt": "a red square", "seed": 3, "cfg_scale": 2.5, "top_k": 4, "negative_prompt": ""},
        {"prompt": "a blue circle", "resolution": 32, "temperature": 0.0},
    ]})
    first, second = specs
    assert (first.request.prompt, first.resolution, second.resolution) == ("a red square", 64, 32)
    assert (first.request.params.seed, first.request.params.cfg_scale, first.request.params.top_k) == (3, 2.5, 4)
    assert first.request.params.negative_prompt == ""
    assert second.request.params.temperature == 0.0 and second.request.params.cfg_scale == 6.0


def test_missing_seeds_are_random_and_below_two_to_the_32(validator: RequestValidator) -> None:
    """Without a seed every image gets its own random seed that any JSON reader holds exactly."""
    seeds = [s.request.params.seed for s in validator.v1({"instances": [{"prompt": "a square"}] * 4})]
    assert len(set(seeds)) == 4 and all(0 <= seed < RANDOM_SEED_BOUND for seed in seeds)


def test_openai_n_images_count_up_from_the_seed(validator: RequestValidator) -> None:
    """n images of one OpenAI request use seed, seed + 1, ...; size picks the resolution."""
    specs = validator.openai({"prompt": "a cross", "n": 3, "seed": 10, "size": "32x32"}, "simplear")
    assert [s.request.params.seed for s in specs] == [10, 11, 12]
    assert {s.resolution for s in specs} == {32}
    assert validator.openai({"prompt": "a cross", "size": "auto"}, "simplear")[0].resolution == 64


def test_limits_come_from_the_config(validator: RequestValidator) -> None:
    """Characters, tokens and images per request are bounded by ServeLimits, with the numbers in the message."""
    with pytest.raises(InvalidInput, match="101 characters; at most 100"):
        validator.v1({"instances": [{"prompt": "a" * 101}]})
    with pytest.raises(InvalidInput, match=r"instances\[0\]\.negative_prompt takes \d+ tokens; at most 40"):
        validator.v1({"instances": [{"prompt": "a", "negative_prompt": "\u00e9\u00e8" * 45}]})
    with pytest.raises(InvalidInput, match="5 images asked; at most 4"):
        validator.openai({"prompt": "a", "n": 5}, "simplear")
    with pytest.raises(InvalidInput, match="seed: Input should be less than 9223372036854775808"):
        validator.openai({"prompt": "a", "n": 2, "seed": 2**63 - 1}, "simplear")


def test_top_k_is_bounded_by_the_codebook(validator: RequestValidator) -> None:
    """top_k up to the codebook size is kept; beyond it (which could overflow the sampler) is refused."""
    assert validator.v1({"instances": [{"prompt": "a", "top_k": 16}]})[0].request.params.top_k == 16
    with pytest.raises(InvalidInput, match="instances.0..top_k 10000000000000000000000 is above the 16 codes"):
        validator.v1({"instances": [{"prompt": "a", "top_k": 10**22}]})


def test_lone_surrogates_are_refused(validator: RequestValidator) -> None:
    """Text that cannot be UTF-8 (a lone surrogate from a JSON escape) is a 400, not a tokenizer crash."""
    with pytest.raises(InvalidInput, match="prompt is not valid Unicode text"):
        validator.v1({"instances": [{"prompt": "a \ud800 square"}]})


def test_every_problem_is_listed(validator: RequestValidator) -> None:
    """Several schema problems of one body are reported together."""
    with pytest.raises(InvalidInput) as refused:
        validator.v1({"instances": [{"prompt": "a", "cfg": 1}, {"prompt": "b", "seed": "7"}]})
    assert str(refused.value) == "instances[0].cfg: unknown field; instances[1].seed: Input should be a valid integer"


def test_v2_shared_parameters_apply_to_every_row(validator: RequestValidator) -> None:
    """Request and prompt-input parameters reach every row; a shared seed s gives row i the seed s + i."""
    request = v2(prompts("a", "b", parameters={"cfg_scale": 2.0}), parameters={"seed": 100, "binary_data_output": True})
    specs = parse_v2(request, validator, codes_only=False)
    assert [s.request.params.seed for s in specs] == [100, 101]
    assert [s.request.params.cfg_scale for s in specs] == [2.0, 2.0]


def test_v2_per_row_inputs(validator: RequestValidator) -> None:
    """Per-row inputs set each row's own values, nested data counts by its shape."""
    request = v2(
        InferInput("prompt", [2, 1], "BYTES", [["a"], ["b"]]),
        InferInput("seed", [2], "INT64", [7, 9]),
        InferInput("resolution", [2], "INT32", [32, 64]),
        InferInput("top_p", [2], "FP32", [0.5, 1.0]),
        InferInput("negative_prompt", [2], "BYTES", [b"blurry", "dark"]),
    )
    specs = parse_v2(request, validator, codes_only=False)
    rows = [(s.request.params.seed, s.resolution, s.request.params.top_p) for s in specs]
    assert rows == [(7, 32, 0.5), (9, 64, 1.0)]
    assert [s.request.params.negative_prompt for s in specs] == ["blurry", "dark"]


@pytest.mark.parametrize(("request_", "message"), [
    (v2(prompts("a"), InferInput("seed", [1], "INT64", [1]), parameters={"seed": 2}),
     "seed given both as a parameter and as an input"),
    (v2(prompts("a"), prompts("b")), "input 'prompt' is given twice"),
    (v2(prompts("a"), InferInput("seed", [1], "FP32", [1.0])), "input 'seed' has datatype FP32; expected INT64"),
    (v2(prompts("a"), parameters={"prompt": "b"}), "unknown parameter 'prompt'"),
    (v2(InferInput("prompt", [0], "BYTES", [])), "input 'prompt' holds no prompt"),
    (v2(InferInput("prompt", [1], "BYTES", [b"\xff\xfe"])), "holds bytes that are not UTF-8 text"),
    (v2(prompts("a"), outputs=["image", "codes"]), "unknown outputs ['codes']"),
    (v2(prompts("a", parameters={"cfg_scale": True})), "row[0].cfg_scale: Input should be a valid number"),
])
def test_v2_refusals_say_what_is_wrong(validator: RequestValidator, request_: InferRequest, message: str) -> None:
    """Each malformed v2 request is refused with a message naming the problem."""
    with pytest.raises(InvalidInput) as refused:
        parse_v2(request_, validator, codes_only=False)
    assert message in str(refused.value)


def test_codes_only_servers_answer_codes(validator: RequestValidator) -> None:
    """On a codes-only server the output to ask for is `codes`, and `image` is unknown."""
    assert parse_v2(v2(prompts("a"), outputs=["codes", "seed"]), validator, codes_only=True)
    with pytest.raises(InvalidInput, match=r"unknown outputs \['image'\]"):
        parse_v2(v2(prompts("a"), outputs=["image"]), validator, codes_only=True)
