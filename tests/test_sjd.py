"""Speculative Jacobi decoding: exactly greedy under argmax, and distributed as plain sampling otherwise."""

from __future__ import annotations

import copy

import pytest
import torch

from simplear.config import SamplingConfig
from simplear.model.prompt import negative_prompt, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request, SamplingModes
from simplear.sampling.distribution import guided_logprobs, target_probs
from simplear.sampling.sampler import Sampler

CAPTION = "a red circle left of a blue square"


@pytest.fixture(scope="module")
def model(peaked_model: SimpleARModel) -> SimpleARModel:
    """The shared peaked tiny model."""
    return peaked_model


GREEDY_REQUESTS = [
    Request(CAPTION, SamplingConfig(temperature=0.0, cfg_scale=3.0)),
    Request("a cross", SamplingConfig(temperature=0.0, cfg_scale=1.0)),
    Request("three green triangles above a yellow circle", SamplingConfig(temperature=0.0, cfg_scale=6.0)),
]


def _draft_blind(model: SimpleARModel) -> SimpleARModel:
    """A copy whose input embeddings give every code the zero vector: its next-code distribution depends on the
    prompt and position, never on the codes drawn, so Jacobi iteration must settle a whole window in two passes."""
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.lm.lm_head.weight = torch.nn.Parameter(blind.lm.lm_head.weight.clone())
        start = blind.vocab.offset
        codes = blind.lm.get_input_embeddings().weight[start:start + blind.vocab.codebook_size]
        codes.zero_()
    return blind


def test_greedy_sjd_returns_exactly_the_plain_decoder_codes(model: SimpleARModel) -> None:
    """With temperature 0, SJD equals step-by-step argmax decoding token for token, for any window."""
    exact = copy.deepcopy(model)
    exact.lm.double()
    sampler = Sampler(exact)
    plain = sampler.generate(GREEDY_REQUESTS, 256)
    for window in (1, 16):
        sjd, _ = sampler.generate_sjd(GREEDY_REQUESTS, 256, window=window)
        assert torch.equal(sjd, plain)


def test_greedy_sjd_accepts_whole_windows_once_the_drafts_settle(model: SimpleARModel) -> None:
    """On a model blind to the codes it drew, greedy SJD accepts the window: 256 codes in about 2 x 256 / 17 passes,
    equal to plain decoding (a random model's argmax chain almost never settles, so it saves nothing there)."""
    blind = _draft_blind(model)
    blind.lm.double()
    sampler = Sampler(blind)
    plain = sampler.generate(GREEDY_REQUESTS, 256)
    assert len({tuple(row.tolist()) for row in plain}) == len(GREEDY_REQUESTS) and len(set(plain[0].tolist())) > 1
    sjd, stats = sampler.generate_sjd(GREEDY_REQUESTS, 256, window=16)
    assert torch.equal(sjd, plain)
    assert stats.iterations <= 2 * -(-256 // 17) and stats.mean_accepted_per_step > 8.0


def _exact_first_codes(model: SimpleARModel, params: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact joint of the first two codes [V, V] and marginal of the third [V], from transformers' forward."""
    v, offset = model.vocab.codebook_size, model.vocab.offset
    cond, uncond = model.encode_prompts([t2i_prompt(CAPTION), negative_prompt(params.negative_prompt)])
    scale = torch.tensor([params.cfg_scale])

    def next_probs(prefixes: torch.Tensor) -> torch.Tensor:
        n = prefixes.shape[0]
        with torch.no_grad():
            logits = torch.cat([
                model.lm(torch.cat([torch.tensor(p)[None].expand(n, -1), prefixes + offset], dim=1)).logits
                [:, -1, offset : offset + v]
                for p in (cond, uncond)
            ])
        logp = guided_logprobs(logits, scale.expand(n), with_uncond=True)
        modes = SamplingModes(scaled=params.temperature != 1, filtered=params.top_k > 0 or params.top_p < 1,
                              greedy=params.temperature == 0)
        probs = target_probs(
            logp, torch.full((n,), params.temperature), torch.full((n,), params.top_k),
            torch.full((n,), params.top_p), modes,
        )
        return probs / probs.sum(-1, keepdim=True)

    p1 = next_probs(torch.zeros(1, 0, dtype=torch.long))[0]
    firsts = torch.arange(v)[:, None]
    joint = p1[:, None] * next_probs(firsts)
    pairs = torch.cartesian_prod(torch.arange(v), torch.arange(v))
    third = (joint.reshape(-1)[:, None] * next_probs(pairs)).sum(0)
    return joint, third


def _chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Goodness of fit of counts to probs; cells expecting fewer than 5 are pooled."""
    expected = probs.double() * counts.sum()
    big = expected >= 5
    observed = torch.cat([counts.double()[big], counts.double()[~big].sum()[None]])
    expected = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = expected > 0
    stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    df = torch.tensor(float(keep.sum() - 1), dtype=torch.float64)
    return float(torch.special.gammaincc(df / 2, stat / 2))


@pytest.mark.parametrize(
    "params",
    [
        SamplingConfig(cfg_scale=2.0, negative_prompt="low quality"),
        SamplingConfig(cfg_scale=3.0, temperature=0.8, top_k=6, top_p=0.9, negative_prompt="blurry"),
    ],
    ids=["cfg", "cfg-topk-topp"],
)
def test_sjd_samples_follow_the_exact_distribution(model: SimpleARModel, params: SamplingConfig) -> None:
    """Over 2,500 seeds, the first two codes jointly and the third marginally fit the exact distribution."""
    joint, third = _exact_first_codes(model, params)
    v = model.vocab.codebook_size
    assert float(joint.max()) > 3.0 / (v * v), "the test needs a peaked distribution to have power"
    requests = [Request(CAPTION, params.model_copy(update={"seed": s})) for s in range(2500)]
    sampler = Sampler(model)
    for codes in (sampler.generate_sjd(requests, 4, window=4)[0], sampler.generate(requests, 3)):
        pair_counts = torch.bincount(codes[:, 0] * v + codes[:, 1], minlength=v * v)
        third_counts = torch.bincount(codes[:, 2], minlength=v)
        assert _chi2_pvalue(pair_counts, joint.reshape(-1)) > 1e-3
        assert _chi2_pvalue(third_counts, third) > 1e-3


def test_chi2_check_rejects_a_wrong_distribution(model: SimpleARModel) -> None:
    """The fit check has power: samples from the unguided distribution fail against the guided one."""
    joint, _ = _exact_first_codes(model, SamplingConfig(cfg_scale=3.0, negative_prompt="blurry"))
    v = model.vocab.codebook_size
    requests = [Request(CAPTION, SamplingConfig(cfg_scale=1.0, seed=s)) for s in range(2500)]
    codes, _ = Sampler(model).generate_sjd(requests, 2, window=2)
    assert _chi2_pvalue(torch.bincount(codes[:, 0] * v + codes[:, 1], minlength=v * v), joint.reshape(-1)) < 1e-3
