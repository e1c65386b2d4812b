"""The sampler against transformers' own forward pass, and its seeding, batching and CFG contracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import transformers_penalized_guided

from simplear.config import SamplingConfig
from simplear.model.prompt import negative_prompt, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.distribution import guided_logprobs
from simplear.sampling.sampler import Sampler

CAPTIONS = ["a red circle", "two blue squares left of a green cross above a yellow triangle", "a photo of a cross"]


@pytest.fixture(scope="module")
def model(peaked_model: SimpleARModel) -> SimpleARModel:
    """The shared peaked tiny model."""
    return peaked_model


def test_decoder_logits_equal_transformers_under_teacher_forcing(model: SimpleARModel) -> None:
    """Prefill plus one-token steps over a left-padded batch give the HF model's code logits (fp32, 1e-5)."""
    sampler = Sampler(model)
    prompts = [t2i_prompt(CAPTIONS[0]), t2i_prompt(CAPTIONS[1])]
    encoded = model.encode_prompts(prompts)
    width, steps = max(map(len, encoded)), 24
    codes = torch.randint(0, model.vocab.codebook_size, (2, steps), generator=torch.Generator().manual_seed(0))

    ids = torch.zeros(2, width, dtype=torch.long)
    real = torch.zeros(2, width, dtype=torch.bool)
    for row, tokens in enumerate(encoded):
        ids[row, width - len(tokens) :] = torch.tensor(tokens)
        real[row, width - len(tokens) :] = True
    positions = (real.long().cumsum(1) - 1).clamp(min=0)
    cache = sampler.decoder.new_cache(2, width + steps)
    with torch.no_grad():
        first = sampler.decoder.forward(ids, positions, torch.arange(width).expand(2, -1), cache, width, real)
        ours = [first[:, -1]]
        for t in range(steps - 1):
            step_ids = model.vocab.to_ids(codes[:, t : t + 1])
            cols = torch.full((2, 1), width + t)
            pos = real.sum(1, keepdim=True) + t
            ours.append(sampler.decoder.forward(step_ids, pos, cols, cache, width + t + 1)[:, 0])
    ours_logits = torch.stack(ours, dim=1)

    for row, tokens in enumerate(encoded):
        full = torch.cat([torch.tensor(tokens), model.vocab.to_ids(codes[row, :-1])])[None]
        with torch.no_grad():
            hf = model.lm(full).logits[0, len(tokens) - 1 :, model.vocab.offset : model.vocab.end]
        torch.testing.assert_close(ours_logits[row], hf, atol=1e-5, rtol=1e-5)


def test_same_seed_reproduces_and_other_seed_differs(model: SimpleARModel) -> None:
    """A seed fixes the codes; another seed gives other codes."""
    sampler = Sampler(model)
    first = sampler.generate([Request(CAPTIONS[0], SamplingConfig(seed=7, cfg_scale=2.0))], 64)
    again = sampler.generate([Request(CAPTIONS[0], SamplingConfig(seed=7, cfg_scale=2.0))], 64)
    other = sampler.generate([Request(CAPTIONS[0], SamplingConfig(seed=8, cfg_scale=2.0))], 64)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_request_alone_equals_request_inside_a_batch(model: SimpleARModel) -> None:
    """Same seed, same codes, whatever else shares the batch (other lengths, scales, filters, negatives)."""
    sampler = Sampler(model)
    requests = [
        Request(CAPTIONS[0], SamplingConfig(seed=11, cfg_scale=4.0)),
        Request(CAPTIONS[1], SamplingConfig(seed=12, cfg_scale=7.5, top_k=5, temperature=0.8)),
        Request(CAPTIONS[2], SamplingConfig(seed=13, top_p=0.7, negative_prompt="blurry")),
    ]
    batched = sampler.generate(requests, 64)
    for i, request in enumerate(requests):
        assert torch.equal(sampler.generate([request], 64)[0], batched[i])
    assert len({tuple(row.tolist()) for row in batched}) == 3


def test_cfg_scale_one_equals_plain_conditional_sampling(model: SimpleARModel) -> None:
    """Scale 1 inside a CFG batch gives the codes of conditional-only decoding, with no unconditional rows."""
    sampler = Sampler(model)
    plain = Request(CAPTIONS[1], SamplingConfig(seed=5, cfg_scale=1.0))
    in_cfg_batch = sampler.generate([plain, Request(CAPTIONS[0], SamplingConfig(seed=6, cfg_scale=6.0))], 64)
    alone = sampler.generate([plain], 64)
    assert torch.equal(alone[0], in_cfg_batch[0])


def test_guidance_is_the_original_formula_on_log_softmax(model: SimpleARModel) -> None:
    """guided = u + s (c - u) on log-softmax, per request scale; it differs from conditional when s != 1."""
    logits = torch.randn(4, model.vocab.codebook_size) * 3
    scale = torch.tensor([1.0, 6.0])
    c, u = logits[:2].log_softmax(-1), logits[2:].log_softmax(-1)
    expected = u + scale[:, None] * (c - u)
    torch.testing.assert_close(guided_logprobs(logits, scale, with_uncond=True), expected)
    assert not torch.allclose(expected[1], c[1])


def test_cfg_changes_the_image(model: SimpleARModel) -> None:
    """The unconditional rows take part: a different negative prompt changes a guided sample."""
    sampler = Sampler(model)
    a = sampler.generate([Request(CAPTIONS[0], SamplingConfig(seed=1, cfg_scale=5.0))], 64)
    b = sampler.generate([Request(CAPTIONS[0], SamplingConfig(seed=1, cfg_scale=5.0, negative_prompt="x"))], 64)
    assert not torch.equal(a, b)
    assert negative_prompt("x") != negative_prompt()


def test_greedy_decoding_is_the_argmax_path(model: SimpleARModel) -> None:
    """Temperature 0 picks the argmax of the guided distribution at every step, whatever the seed."""
    sampler = Sampler(model)
    greedy = [Request(CAPTIONS[0], SamplingConfig(seed=s, temperature=0.0, cfg_scale=3.0)) for s in (1, 2)]
    codes = sampler.generate(greedy, 32)
    assert torch.equal(codes[0], codes[1])
    ids = model.encode_prompts([t2i_prompt(CAPTIONS[0]), negative_prompt()])
    with torch.no_grad():
        cond = model.lm(torch.tensor([ids[0]])).logits[0, -1, model.vocab.offset : model.vocab.end]
        uncond = model.lm(torch.tensor([ids[1]])).logits[0, -1, model.vocab.offset : model.vocab.end]
    first = guided_logprobs(torch.stack([cond, uncond]), torch.tensor([3.0]), True).argmax()
    assert int(codes[0, 0]) == int(first)


def test_top_k_one_is_greedy(model: SimpleARModel) -> None:
    """Keeping one candidate equals argmax decoding."""
    sampler = Sampler(model)
    k1 = sampler.generate([Request(CAPTIONS[2], SamplingConfig(seed=9, top_k=1))], 32)
    greedy = sampler.generate([Request(CAPTIONS[2], SamplingConfig(seed=4, temperature=0.0))], 32)
    assert torch.equal(k1, greedy)


def test_sample_returns_the_log_probability_of_each_code(model: SimpleARModel) -> None:
    """Each code's log-probability is that of the guided distribution it was drawn from, per transformers."""
    params = SamplingConfig(seed=3, cfg_scale=2.5, negative_prompt="blurry")
    samples = Sampler(model).sample([Request(CAPTIONS[0], params)], 6)
    assert torch.equal(samples.codes, Sampler(model).generate([Request(CAPTIONS[0], params)], 6))
    cond, uncond = model.encode_prompts([t2i_prompt(CAPTIONS[0]), negative_prompt("blurry")])
    codes = model.vocab.to_ids(samples.codes[0])
    with torch.no_grad():
        rows = [model.lm(torch.cat([torch.tensor(p), codes])[None]).logits[0, len(p) - 1 : -1] for p in (cond, uncond)]
    guided = guided_logprobs(torch.stack(rows)[..., model.vocab.offset : model.vocab.end], torch.tensor([2.5]), True)
    expected = guided[0].log_softmax(-1).gather(1, samples.codes[0][:, None]).squeeze(1)
    torch.testing.assert_close(samples.logprobs[0], expected, atol=1e-4, rtol=1e-4)


def test_prompts_past_the_position_limit_are_refused(model: SimpleARModel) -> None:
    """Prompt plus codes longer than max_position_embeddings is a clear error, not silent garbage."""
    long_caption = "a red circle " * 700
    with pytest.raises(ValueError, match="exceeds the model's 2048 positions"):
        Sampler(model).generate([Request(long_caption)], 256)


def test_repetition_penalty_acts_before_guidance_as_transformers(model: SimpleARModel, tmp_path: Path) -> None:
    """A penalty on codes already drawn, before CFG, as transformers applies a checkpoint's generation_config.json.

    A request without a penalty takes its checkpoint's; a setting we cannot apply is refused at load time.
    """
    request = Request(CAPTIONS[0], SamplingConfig(seed=5, cfg_scale=3.0, repetition_penalty=1.5))
    samples = Sampler(model).sample([request], 24)
    expected = transformers_penalized_guided(model, request, samples.codes[0])
    torch.testing.assert_close(samples.logprobs[0], expected.gather(1, samples.codes[0][:, None]).squeeze(1),
                               atol=1e-4, rtol=1e-4)
    unpenalised = SamplingConfig(seed=5, cfg_scale=3.0, repetition_penalty=1.0)
    assert not torch.equal(samples.codes, Sampler(model).generate([Request(CAPTIONS[0], unpenalised)], 24))
    with pytest.raises(ValueError, match="Jacobi decoding applies no repetition penalty"):
        Sampler(model).generate_sjd([request], 24)

    model.save(tmp_path / "ckpt")
    settings = {"repetition_penalty": 1.5, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "do_sample": True,
                "eos_token_id": [151645, 151643], "bos_token_id": 151643, "transformers_version": "4.37.0"}
    (tmp_path / "ckpt" / "generation_config.json").write_text(json.dumps(settings))
    loaded = SimpleARModel.load(tmp_path / "ckpt")
    assert loaded.generation.repetition_penalty == 1.5
    default = Request(CAPTIONS[0], SamplingConfig(seed=5, cfg_scale=3.0))
    assert torch.equal(Sampler(loaded).generate([default], 24), samples.codes)

    (tmp_path / "ckpt" / "generation_config.json").write_text(json.dumps({**settings, "no_repeat_ngram_size": 3}))
    with pytest.raises(ValueError, match="sets no_repeat_ngram_size=3, which upstream's generation applies"):
        SimpleARModel.load(tmp_path / "ckpt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_replay_draws_eagers_greedy_codes_in_fp32() -> None:
    """Replayed decode steps (bucketed attention, prompts padded to 16) give eager decoding's greedy codes exactly in
    fp32; on an H200 the 0.5B preset agreed on 100 % of them (bench/results/sampler_cuda_float32.json), while bf16's
    rounding of the reordered sums parts them after an early near-tie."""
    from simplear.config import get_preset

    model = SimpleARModel.random_init(get_preset("tiny"), dtype=torch.float32)
    model.lm.to("cuda")
    requests = [Request(caption, SamplingConfig(cfg_scale=3.0, temperature=0.0))
                for caption in ("a red circle", "two blue squares left of a green cross", "a cat")]
    eager = Sampler(model, cuda_graphs=False).generate(requests, 200)
    replayed = Sampler(model, cuda_graphs=True)
    assert torch.equal(replayed.generate(requests, 200), eager)
    assert torch.equal(replayed.generate(requests, 200), eager), "a second call replays the captured graphs"
