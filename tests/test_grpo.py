"""`simplear train --stage grpo`: prompts, rollouts, trl's advantages / clipped loss / KL by hand, learning, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from helpers import SHAPE, parser_options, write_aesthetic_head, write_tiny_clip
from PIL import Image
from safetensors.torch import load_file

from simplear.cli import main as cli_main
from simplear.config import PRESETS, GRPOTrainConfig, RewardSpec
from simplear.data.shapes import make_dataset, write_dataset
from simplear.model.prompt import t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.store import Store, join
from simplear.train.checkpoints import checkpoint_uri, latest_checkpoint
from simplear.train.grpo.reward_curve import SMOOTHED_COLOUR, draw_reward_curve, moving_mean, reward_curve
from simplear.train.grpo.rewards import REWARD_BUILDERS, register_reward
from simplear.train.grpo.rollout_function import IMAGES_FIELD, StaleRolloutError, load_prompts, prompt_dataset
from simplear.train.grpo.sampled_policy import EpochSeededRepeatSampler
from simplear.train.grpo.trainer import REWARD_CURVE_PNG, TRL_FIELDS, GRPORun, build_run, grpo_arguments, train_grpo
from simplear.train.rollout.server import RolloutServerProcess
from simplear.train.train_command import add_arguments, config_from_args

TINY = PRESETS["tiny"]
SMALL = TINY.model_copy(update={"shape": SHAPE, "vision": TINY.vision.model_copy(update={"resolution": 32})})
"""The tiny preset's palette and vocabulary with a smaller transformer and 32 px images (8 x 8 = 64 codes)."""
CODES = SMALL.vision.num_codes
WHITE = 0
"""Palette code of white."""
CAPTIONS = ("a red circle", "a blue square", "two crosses", "a green triangle")
LEARN_STEPS = 8
LEARN_MARGIN = 0.10
"""Least rise of the mean white share on held-out seeds after LEARN_STEPS steps (measured: 0.05 -> 0.24)."""
RUN_STEPS, SAVE_STEPS = 4, 2
RESUME_TOLERANCE = 1e-5
RUN_TIMEOUT_S = 400


def white_share(prompts: list[str], images: list[Image.Image], metadata: list) -> list[float]:
    """Share of white pixels: a reward a random tiny model learns within a few steps."""
    return [float((np.asarray(image) == 255).all(axis=-1).mean()) for image in images]


@pytest.fixture(scope="module", autouse=True)
def white_reward() -> Iterator[None]:
    """The `white` reward, registered for this module's in-process runs."""
    register_reward("white", lambda spec, context: white_share)
    yield
    REWARD_BUILDERS.pop("white")


@pytest.fixture(scope="module")
def init_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random model of the small shape saved with its vision.json, the 'SFT model' every run starts from."""
    path = str(tmp_path_factory.mktemp("init") / "model")
    SimpleARModel.random_init(SMALL, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def caption_meta(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A JSONL meta file of four records with plain captions."""
    path = tmp_path_factory.mktemp("meta") / "captions.jsonl"
    lines = [json.dumps({"image_path": f"img{i}.png", "caption": c}) for i, c in enumerate(CAPTIONS)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def shapes_meta(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shapes dataset writer's meta.jsonl: {short, long} captions and GenEval metadata."""
    return str(write_dataset(make_dataset(12, seed=5), tmp_path_factory.mktemp("shapes")))


def grpo_config(tmp_path: Path, init_model: str, prompts: str, **fields: object) -> GRPOTrainConfig:
    """A small in-process GRPO config on the `white` reward, guided rollouts at CFG 3, no KL; `fields` override."""
    settings: dict = {
        "prompts": prompts, "init_from": init_model, "output": str(tmp_path / "run"),
        "scratch": str(tmp_path / "scratch"), "rewards": [{"name": "white"}], "batch_size": 8, "max_steps": 2,
        "policy": "guided", "sampling": {"cfg_scale": 3.0}, "beta": 0.0, "tensorboard": False, "save_steps": 100,
    }
    return GRPOTrainConfig.model_validate({**settings, **fields})


def generation_inputs(run: GRPORun, groups: int) -> list[dict]:
    """What trl's repeat sampler hands the trainer: the first `groups` dataset rows, each num_generations times."""
    dataset = run.trainer.train_dataset
    return [dict(dataset[i]) for i in range(groups) for _ in range(run.trainer.num_generations)]


def policy_logps(run: GRPORun, batch: dict) -> torch.Tensor:
    """Log-probabilities of the completion codes under the sampled policy, as the loss computes them."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logps, _, _ = run.trainer._get_per_token_logps_and_entropies(run.trainer.model, ids, mask, CODES)
    return logps


# ---------------------------------------------------------------- config, prompts, curve


def test_grpo_config_rules_and_defaults() -> None:
    """Upstream's defaults; an http rollout needs a URL, groups must fit the batch, greedy sampling is refused.

    Upstream: wdrink/SimpleAR simpar/configs/config_grpo_clip.yaml (lr, schedule, warmup, generations, temperature)
    over trl 69ad852e's GRPOConfig (beta 0.04, epsilon 0.2, one iteration; KL as plain k3), rollouts without CFG
    (trl's vLLM SamplingParams there carry temperature only) and the prefix of simpar/train/t2i_data.py.
    """
    base = {"prompts": "p", "output": "o", "init_from": "m", "max_steps": 1}
    config = GRPOTrainConfig(**base)
    assert (config.learning_rate, config.min_lr_ratio, config.warmup_ratio) == (1e-6, 0.1, 0.1)
    assert (config.num_generations, config.sampling.temperature, config.beta) == (4, 1.0, 0.04)
    assert (config.epsilon, config.num_iterations, config.kl_ratio_weighted) == (0.2, 1, False)
    assert (config.policy, config.sampling.cfg_scale, config.prompt_prefix) == ("plain", 1.0, "A photo of ")
    assert [r.name for r in config.rewards] == ["geneval_shapes"]
    with pytest.raises(ValueError, match="policy 'plain' samples without CFG"):
        GRPOTrainConfig(**base, sampling={"cfg_scale": 5.0})
    with pytest.raises(ValueError, match="policy 'guided' trains on CFG rollouts"):
        GRPOTrainConfig(**base, policy="guided")
    assert GRPOTrainConfig(**base, sampling={"top_k": 5}).sampling.cfg_scale == 1.0, "a partial sampling block"
    with pytest.raises(ValueError, match="needs rollout_url"):
        GRPOTrainConfig(**base, rollout="http")
    with pytest.raises(ValueError, match="whole groups"):
        GRPOTrainConfig(**base, batch_size=6)
    with pytest.raises(ValueError, match="temperature must be above 0"):
        GRPOTrainConfig(**base, sampling={"temperature": 0.0})


def test_cli_builds_grpo_configs_and_refuses_other_stages_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--reward NAME[:WEIGHT] with the CLIP files, sampling flags over --config's; a pretrain flag is exit 2."""
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config_file = tmp_path / "grpo.yaml"
    config_file.write_text(yaml.safe_dump({"stage": "grpo", "policy": "guided",
                                           "sampling": {"top_k": 5, "cfg_scale": 9.0}}))
    args = parser.parse_args([
        "--config", str(config_file), "--prompts", "p.jsonl", "--init-from", "sft", "--output", "out",
        "--max-steps", "3", "--reward", "geneval_shapes", "--reward", "clip:0.5", "--reward", "aesthetic:-1",
        "--clip-model", "clipdir", "--aesthetic-head", "head.safetensors", "--cfg-scale", "3", "--beta", "0.04",
        "--caption", "short", "--negative-prompt", "", "--prompt-prefix", "",
    ])  # fmt: skip
    config = config_from_args(args)
    assert isinstance(config, GRPOTrainConfig)
    assert config.rewards == (
        RewardSpec(name="geneval_shapes"),
        RewardSpec(name="clip", weight=0.5, clip_model="clipdir"),
        RewardSpec(name="aesthetic", weight=-1.0, clip_model="clipdir", aesthetic_head="head.safetensors"),
    )
    assert (config.sampling.cfg_scale, config.sampling.top_k, config.beta, config.caption) == (3.0, 5, 0.04, "short")
    assert (config.policy, config.sampling.negative_prompt, config.prompt_prefix) == ("guided", "", "")
    assert cli_main(["train", "--stage", "grpo", "--data", "tokens", "--output", "o", "--max-steps", "1"]) == 2
    assert "--data not used by --stage grpo" in capsys.readouterr().err
    assert cli_main(["train", "--stage", "pretrain", "--data", "d", "--output", "o", "--max-steps", "1",
                     "--beta", "0.1"]) == 2  # fmt: skip
    assert "--beta not used by --stage pretrain" in capsys.readouterr().err


def test_the_fields_named_as_trl_names_them_reach_its_grpoconfig_unchanged(tmp_path: Path) -> None:
    """TRL_FIELDS are fields of trl's GRPOConfig (trl/trainer/grpo_config.py) and arrive there as set."""
    from dataclasses import fields

    from trl import GRPOConfig

    config = GRPOTrainConfig(
        prompts="p", init_from="m", output="o", max_steps=7, num_generations=4, num_iterations=2, learning_rate=3e-5,
        weight_decay=0.02, max_grad_norm=0.5, beta=0.3, epsilon=0.25, epsilon_high=0.3, loss_type="dr_grpo",
        scale_rewards="batch", gradient_checkpointing=True, save_steps=3, logging_steps=2, seed=9, batch_size=8,
    )
    assert {field.name for field in fields(GRPOConfig)} >= TRL_FIELDS
    arguments = grpo_arguments(config, tmp_path, num_codes=16)
    assert {name: getattr(arguments, name) for name in TRL_FIELDS} == config.model_dump(include=set(TRL_FIELDS))
    assert (arguments.per_device_train_batch_size, arguments.max_completion_length) == (8, 16)


def test_train_flags_are_generated_from_both_stage_configs() -> None:
    """Every scalar field of TrainConfig and GRPOTrainConfig (GRPO's rollout sampling included) is a flag of
    `simplear train` with the field's type and choices; a boolean field is --x / --no-x; a flag of the other
    stage's config is refused."""
    import argparse

    from simplear.config import TrainConfig
    from simplear.config.flags import flag_name, scalar_type

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = set(parser_options(parser))
    fields = [(name, info) for model in (TrainConfig, GRPOTrainConfig) for name, info in model.model_fields.items()]
    assert [name for name, info in fields if scalar_type(info.annotation) and flag_name(name) not in options] == []
    assert {"--cfg-scale", "--top-k", "--no-sample-short", "--kl-ratio-weighted", "--no-tensorboard"} <= options
    grpo = ["--stage", "grpo", "--prompts", "p", "--init-from", "m", "--output", "o", "--max-steps", "2"]
    config = config_from_args(parser.parse_args([*grpo, "--kl-ratio-weighted", "--no-tensorboard", "--top-k", "7",
                                                 "--rollout-sync-port", "123"]))
    assert (config.kl_ratio_weighted, config.tensorboard, config.sampling.top_k, config.rollout_sync_port) == (
        True, False, 7, 123)
    pretrain = ["--stage", "pretrain", "--data", "d", "--output", "o", "--max-steps", "2"]
    config = config_from_args(parser.parse_args([*pretrain, "--no-sample-short", "--zero-stage", "3"]))
    assert (config.sample_short, config.zero_stage) == (False, 3)
    with pytest.raises(ValueError, match="--policy, --top-k not used by --stage pretrain"):
        config_from_args(parser.parse_args([*pretrain, "--top-k", "3", "--policy", "plain"]))
    for bad in (["--zero-stage", "4"], ["--max-steps", "two"], ["--policy", "sharp"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    as_json = GRPOTrainConfig(prompts="p", init_from="m", output="o", max_steps=2, beta=0.1).model_dump_json()
    config = config_from_args(parser.parse_args(["--stage", "grpo", "--config-json", as_json, "--beta", "0.2"]))
    assert (config.prompts, config.beta) == ("p", 0.2)
    for argv, message in ((["--config-json", "{not json"], "--config-json is not JSON"),
                          (["--stage", "sft", "--config-json", as_json], "--stage sft but the config is stage 'grpo'"),
                          (["--config-json", "[1]"], "must be a mapping")):
        with pytest.raises(ValueError, match=message):
            config_from_args(parser.parse_args(argv))


def test_prompt_source_chooses_captions_and_keeps_metadata_exact(shapes_meta: str, tmp_path: Path) -> None:
    """short / long / mixed captions; metadata survives the dataset exactly; a YAML mix selects records."""
    records = [json.loads(line) for line in Path(shapes_meta).read_text().splitlines()]
    short = load_prompts(shapes_meta, "short", seed=0, store=Store())
    long = load_prompts(shapes_meta, "long", seed=0, store=Store())
    assert [p.caption for p in short] == [r["caption"]["short"] for r in records]
    assert [p.caption for p in long] == [r["caption"]["long"] for r in records]
    mixed = [p.caption for p in load_prompts(shapes_meta, "mixed", seed=0, store=Store())]
    assert mixed == [p.caption for p in load_prompts(shapes_meta, "mixed", seed=0, store=Store())]
    assert {"short", "long"} == {"short" if m == s.caption else "long" for m, s in zip(mixed, short, strict=True)}
    dataset = prompt_dataset(short)
    assert dataset["prompt"] == [p.caption for p in short]
    assert [json.loads(text) for text in dataset["metadata"]] == [r["metadata"] for r in records]
    mix = tmp_path / "mix.yaml"
    mix.write_text(yaml.safe_dump({"datasets": [{"json_path": shapes_meta, "sampling_strategy": "end:3"}]}))
    assert load_prompts(str(mix), "short", seed=0, store=Store()) == short[-3:]


def test_reward_curve_points_and_png() -> None:
    """Points come from rows with a reward; the PNG draws the weighted reward and each of several rewards."""
    rows = [{"step": 1, "loss": 0.1}] + [
        {"step": s, "reward": 0.1 * s, "reward_std": 0.01, "rewards/a/mean": 0.1 * s, "rewards/a/std": 0.0,
         "rewards/b/mean": 0.3, "rewards/b/std": 0.0}
        for s in range(1, 6)
    ]  # fmt: skip
    curve = reward_curve(rows)
    assert [p["step"] for p in curve] == [1, 2, 3, 4, 5]
    assert curve[2] == {
        "step": 3, "reward": pytest.approx(0.3), "reward_std": 0.01, "rewards/a/mean": pytest.approx(0.3),
        "rewards/a/std": 0.0, "rewards/b/mean": 0.3, "rewards/b/std": 0.0,
    }  # fmt: skip
    image = np.asarray(draw_reward_curve(curve))
    assert image.shape == (420, 720, 3)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert {(0, 0, 0), (31, 119, 180), (214, 39, 40)} <= colours, "total in black, a and b in their colours"
    assert SMOOTHED_COLOUR not in colours, "five points draw no moving mean"


def test_long_reward_curves_get_amoving_mean() -> None:
    """From eight points on, a trailing moving mean is drawn over the noisy per-step reward."""
    curve = reward_curve([{"step": s, "reward": float(s % 2)} for s in range(1, 25)])
    colours = {tuple(c) for c in np.asarray(draw_reward_curve(curve)).reshape(-1, 3)}
    assert {(0, 0, 0), SMOOTHED_COLOUR} <= colours
    assert moving_mean([(1, 1.0), (2, 0.0), (3, 1.0), (4, 0.0)], 3) == [(1, 1.0), (2, 0.5), (3, 2 / 3), (4, 1 / 3)]


def test_prompt_order_depends_only_on_seed_and_epoch() -> None:
    """A sampler made afresh for epoch 1 (as on resume) yields what a sampler that went through epoch 0 yields."""
    def sampler() -> EpochSeededRepeatSampler:
        return EpochSeededRepeatSampler(list(range(10)), mini_repeat_count=4, batch_size=5, repeat_count=1, seed=7)

    running = sampler()
    running.set_epoch(0)
    first = list(running)
    running.set_epoch(1)
    second = list(running)
    fresh = sampler()
    fresh.set_epoch(1)
    assert list(fresh) == second != first
    assert first[:4] == [first[0]] * 4, "each prompt comes num_generations times in a row"
    assert sorted(set(second)) == list(range(10))


# ---------------------------------------------------------------- rollouts and trl's GRPO maths


def test_rollouts_seed_each_group_member_and_refuse_stale_weights(
    tmp_path: Path, init_model: str, caption_meta: str
) -> None:
    """Conditional prompt ids, code ids, distinct images within a group, reproducible; a foreign push is stale."""
    run = build_run(grpo_config(tmp_path, init_model, caption_meta), Store())
    prompts = [CAPTIONS[0]] * 4 + [CAPTIONS[1]] * 4
    out = run.rollouts(prompts, run.trainer)
    assert out["prompt_ids"] == run.model.encode_prompts([t2i_prompt(p, "A photo of ") for p in prompts])
    ids = torch.tensor(out["completion_ids"])
    assert ids.shape == (8, CODES) and int(ids.min()) >= run.model.vocab.offset and int(ids.max()) < run.model.vocab.end
    assert len({tuple(row) for row in ids.tolist()}) == 8, "every group member has its own seed"
    assert all(image.size == (32, 32) for image in out[IMAGES_FIELD])
    assert torch.tensor(out["logprobs"]).shape == (8, CODES) and max(max(row) for row in out["logprobs"]) <= 0
    assert run.rollouts(prompts, run.trainer)["completion_ids"] == out["completion_ids"], "same step, same rollouts"
    assert run.rollouts.version == 1, "weights are pushed once per optimizer step"
    run.rollouts.client.push_weights(run.model)
    with pytest.raises(StaleRolloutError, match="policy version 2, but version 1 was pushed"):
        run.rollouts(prompts, run.trainer)


def test_advantages_are_rewards_normalised_per_group(tmp_path: Path, init_model: str, caption_meta: str) -> None:
    """trl's advantages = (r - group mean) / (group std + 1e-4), r recomputed by hand from the returned codes."""
    run = build_run(grpo_config(tmp_path, init_model, caption_meta, batch_size=16), Store())
    run.trainer.model.train()
    out = run.trainer._generate_and_score_completions(generation_inputs(run, groups=4))
    codes = out["completion_ids"] - run.model.vocab.offset
    rewards = (codes == WHITE).float().mean(dim=1).view(4, 4)
    expected = (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + 1e-4)
    assert rewards.std(dim=1).min() > 0, "the check needs groups with spread"
    torch.testing.assert_close(out["advantages"], expected.flatten(), atol=1e-5, rtol=1e-5)
    assert run.trainer._metrics["train"]["rewards/white/mean"][-1] == pytest.approx(float(rewards.mean()), abs=1e-6)


@pytest.mark.parametrize("ratio_weighted", [False, True])
def test_clipped_ratio_and_kl_loss_match_a_hand_computation(
    tmp_path: Path, init_model: str, caption_meta: str, ratio_weighted: bool
) -> None:
    """-min(r A, clip(r, 1 - eps, 1 + eps_high) A) + beta KL per token, sequence means averaged; clip share, KL.

    KL is the k3 estimator exp(ref - logp) - (ref - logp) - 1: plain, as upstream's trl 69ad852e computes it (the
    default), or weighted by the ratio r (`kl_ratio_weighted`, trl 1.16's `use_bias_correction_kl`: the unbiased
    reverse-KL gradient; on-policy r = 1 and the value is the same).
    """
    beta, eps, eps_high = 0.1, 0.2, 0.28
    config = grpo_config(tmp_path, init_model, caption_meta, beta=beta, epsilon=eps, epsilon_high=eps_high,
                         kl_ratio_weighted=ratio_weighted)
    run = build_run(config, Store())
    assert run.trainer.ref_model is not None, "beta > 0 loads the initial model as the reference"
    run.trainer.model.train()
    batch = run.trainer._generate_and_score_completions(generation_inputs(run, groups=2))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        logp = policy_logps(run, batch)
    old = logp - (torch.rand(logp.shape, generator=generator) - 0.5)
    ref = logp + (torch.rand(logp.shape, generator=generator) - 0.5) * 0.4
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.25, -0.25])
    inputs = {**batch, "old_per_token_logps": old, "ref_per_token_logps": ref, "advantages": advantages}
    run.trainer.current_gradient_accumulation_steps = 1
    loss = run.trainer._compute_loss(run.trainer.model, inputs)

    ratio = (logp - old).exp()
    a = advantages[:, None]
    surrogate = -torch.min(ratio * a, ratio.clamp(1 - eps, 1 + eps_high) * a)
    kl = ((ref - logp).exp() - (ref - logp) - 1) * (ratio if ratio_weighted else 1.0)
    expected = (surrogate + beta * kl).mean(dim=1).mean()
    clipped = ((ratio < 1 - eps) & (a < 0)) | ((ratio > 1 + eps_high) & (a > 0))
    assert 0.05 < float(clipped.float().mean()) < 0.5, "the check needs clipped and unclipped tokens"
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-6)
    metrics = run.trainer._metrics["train"]
    assert metrics["clip_ratio/region_mean"][-1] == pytest.approx(float(clipped.float().mean()), abs=1e-6)
    assert metrics["kl"][-1] == pytest.approx(float(kl.mean()), abs=1e-6)
    loss.backward()
    assert run.model.lm.get_input_embeddings().weight.grad.abs().sum() > 0, "the loss reaches the policy's weights"


POLICY_TOLERANCE = 2e-5
"""Largest difference between the loss's and the sampler's log-probability of a code (fp32 both; measured ~1e-6)."""


@pytest.mark.parametrize(("policy", "cfg_scale"), [("plain", 1.0), ("guided", 3.0)])
def test_loss_scores_each_code_with_the_policy_that_sampled_it(
    tmp_path: Path, init_model: str, caption_meta: str, policy: str, cfg_scale: float
) -> None:
    """The log-probabilities the loss sees equal Sampler.sample's own for the sampled codes, plain and guided.

    Rollouts at temperature 0.9 with top-k 12 of the 16 codes; `guided` against a negative prompt. The loss's
    values come from a forward of the model as trl calls it (not the sampler's KV-cache decoder). With pi_old set
    to the sampler's values and every advantage 1, the clipped loss is then exactly -1 with nothing clipped.
    Guided gradients reach the embeddings of tokens only the negative prompt holds; plain ones do not.
    """
    sampling = {"cfg_scale": cfg_scale, "temperature": 0.9, "top_k": 12, "negative_prompt": "gray background"}
    config = grpo_config(tmp_path, init_model, caption_meta, policy=policy, sampling=sampling)
    run = build_run(config, Store())
    run.trainer.model.train()
    batch = run.trainer._generate_and_score_completions(generation_inputs(run, groups=2))
    sampled = batch["sampling_per_token_logps"]
    assert sampled.shape == (8, CODES) and float(sampled.max()) < 0
    with torch.no_grad():
        seen = policy_logps(run, batch)
    torch.testing.assert_close(seen, sampled, atol=POLICY_TOLERANCE, rtol=0)

    run.trainer.current_gradient_accumulation_steps = 1
    inputs = {**batch, "old_per_token_logps": sampled, "advantages": torch.ones(8)}
    loss = run.trainer._compute_loss(run.trainer.model, inputs)
    assert float(loss.detach()) == pytest.approx(-1.0, abs=1e-4)
    assert run.trainer._metrics["train"]["clip_ratio/region_mean"][-1] == 0.0
    loss.backward()
    uncond_only = set(run.trainer.policy.uncond_prompt_ids) - set(batch["prompt_ids"].flatten().tolist())
    grad = run.model.lm.get_input_embeddings().weight.grad[sorted(uncond_only)]
    assert uncond_only and (float(grad.abs().sum()) > 0) == (policy == "guided")


# ---------------------------------------------------------------- real runs


def mean_white_share(model: SimpleARModel, config: GRPOTrainConfig) -> float:
    """Share of white codes over the captions x 8 held-out seeds, sampled as the rollouts are."""
    requests = [Request(c, config.sampling.model_copy(update={"seed": 10_000 + j}), config.prompt_prefix)
                for c in CAPTIONS for j in range(8)]
    return float((Sampler(model).generate(requests, CODES) == WHITE).float().mean())


def test_grpo_raises_the_mean_reward_on_fixed_prompts(tmp_path: Path, init_model: str, caption_meta: str) -> None:
    """8 steps of GRPO on `white` (lr 1e-3, CFG 3) raise the held-out mean reward by LEARN_MARGIN or more.

    A random model draws white 1/16 of the time (measured 0.05 on these prompts and seeds); the reward is dense
    and the policy can reach it through the output embedding of one code, so eight steps of 4 groups of 4 move
    it reliably (measured 0.24, against the 0.15 the margin asks for).
    """
    config = grpo_config(tmp_path, init_model, caption_meta, max_steps=LEARN_STEPS, batch_size=16,
                         learning_rate=1e-3, warmup_ratio=0.0)  # fmt: skip
    before = mean_white_share(SimpleARModel.load(init_model), config)
    result = train_grpo(config, Store())
    after = mean_white_share(SimpleARModel.load(result.final), config)
    assert after >= before + LEARN_MARGIN, (before, after, [p["reward"] for p in result.reward_curve])

    rows = [json.loads(line) for line in (Path(config.output) / "logs" / "train.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, LEARN_STEPS + 1))
    for row in rows:
        assert {"rewards/white/mean", "rewards/white/std", "reward", "clip_fraction", "learning_rate"} <= row.keys()
        assert row["rollout_time_s"] > 0 and row["train_time_s"] > 0 and row["reward_time_s"] > 0
        assert row["policy_version"] == row["step"], "one weight push per optimizer step"
    assert [p["reward"] for p in result.reward_curve] == [row["reward"] for row in rows]
    assert Image.open(Path(config.output) / REWARD_CURVE_PNG).size == (720, 420)
    assert SimpleARModel.load(result.final).vision == SMALL.vision, "the final model keeps its vision.json"


def test_time_limit_stops_with_a_checkpoint(tmp_path: Path, init_model: str, caption_meta: str) -> None:
    """max_minutes: the step that ends past the limit is the last; it is checkpointed and the final model saved."""
    config = grpo_config(tmp_path, init_model, caption_meta, max_steps=50, max_minutes=1e-4)
    result = train_grpo(config, Store())
    assert result.steps == 1
    assert latest_checkpoint(Store(), config.output) == (1, checkpoint_uri(config.output, 1))
    assert SimpleARModel.load(result.final).vocab.codebook_size == SMALL.vision.codebook_size


def test_grpo_through_the_rollout_server_trains_as_in_process(
    tmp_path: Path, init_model: str, caption_meta: str
) -> None:
    """rollout http: weights pushed through the store each step, rollouts from the torch server; same as in-process.

    The torch engine samples with the project's sampler and the same per-request seeds, and the pushed weights are
    the trainer's fp32 tensors, so every step's rewards and the final weights equal the in-process run's.
    """
    local = train_grpo(grpo_config(tmp_path / "local", init_model, caption_meta, max_steps=3), Store())
    with RolloutServerProcess(["--engine", "torch", "--model", init_model]) as server:
        config = grpo_config(tmp_path / "http", init_model, caption_meta, max_steps=3, rollout="http",
                             rollout_url=server.url)  # fmt: skip
        remote = train_grpo(config, Store())
    assert [p["reward"] for p in remote.reward_curve] == pytest.approx([p["reward"] for p in local.reward_curve])
    rows = [json.loads(line) for line in (Path(config.output) / "logs" / "train.jsonl").read_text().splitlines()]
    assert [row["policy_version"] for row in rows] == [1, 2, 3], "one push per step to a server at version 0"
    a, b = (load_file(str(Path(r.final) / "model.safetensors")) for r in (local, remote))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= RESUME_TOLERANCE


def grpo_command(
    config: Path, output: str, scratch: Path, clip: Path, head: Path, init_model: str, prompts: str
) -> list[str]:
    """`simplear train --stage grpo` on CLIP (weight 1) + aesthetic (weight 0.5) with a KL term."""
    return [
        sys.executable, "-m", "simplear.cli", "train", "--stage", "grpo", "--config", str(config),
        "--prompts", prompts, "--init-from", init_model, "--output", output, "--scratch", str(scratch),
        "--reward", "clip", "--reward", "aesthetic:0.5", "--clip-model", str(clip), "--aesthetic-head", str(head),
        "--max-steps", str(RUN_STEPS), "--save-steps", str(SAVE_STEPS), "--batch-size", "8",
        "--learning-rate", "1e-3", "--beta", "0.04", "--policy", "guided", "--cfg-scale", "3", "--no-tensorboard",
    ]  # fmt: skip


def run_to_end(command: list[str]) -> str:
    """Run a training job to the end; its combined output (the test fails with it if the job fails or hangs)."""
    job = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=dict(os.environ))
    assert job.returncode == 0, (job.stdout + job.stderr)[-6000:]
    return job.stdout + job.stderr


def metric_rows(output: str) -> list[dict]:
    """The run's JSONL metric rows."""
    return [json.loads(line) for line in Store().read(join(output, "logs", "train.jsonl")).decode().splitlines()]


def test_killed_run_resumes_from_last_checkpoint(
    tmp_path: Path, init_model: str, caption_meta: str
) -> None:
    """SIGKILL after checkpoint 2: the restart resumes there and logs, scores and ends exactly as an unbroken run.

    Also checks the weighted sum: every row's `reward` is 1 x clip mean + 0.5 x aesthetic mean. Rollout seeds
    come from the optimizer step, and the checkpoint restores weights, Adam moments, schedule, RNG and data
    position, so on one CPU process the resumed rewards and final weights agree with the reference to float
    rounding; RESUME_TOLERANCE (1e-5) fails a resume that loses any of them (rewards move by ~1e-2 per step).
    """
    clip = write_tiny_clip(tmp_path / "clip")
    head = write_aesthetic_head(tmp_path / "aesthetic.safetensors")
    settings = tmp_path / "grpo.yaml"
    settings.write_text(yaml.safe_dump({"sampling": {"cfg_scale": 3.0, "seed": 11}, "seed": 3}))
    reference = str(tmp_path / "store" / "reference")
    run_to_end(grpo_command(settings, reference, tmp_path / "ref-scratch", clip, head, init_model, caption_meta))
    want = metric_rows(reference)
    assert [row["step"] for row in want] == list(range(1, RUN_STEPS + 1))
    for row in want:
        weighted = row["rewards/clip/mean"] + 0.5 * row["rewards/aesthetic/mean"]
        assert row["reward"] == pytest.approx(weighted, abs=1e-6)
        assert "kl" in row and row["clip_fraction"] >= 0
    assert len({round(row["reward"], 6) for row in want}) == RUN_STEPS, "the rewards move from step to step"

    output = str(tmp_path / "store" / "killed")
    command = grpo_command(settings, output, tmp_path / "scratch", clip, head, init_model, caption_meta)
    log = (tmp_path / "killed.log").open("w")
    job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    checkpoint = checkpoint_uri(output, SAVE_STEPS)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not Store().artifact_exists(checkpoint):
            assert job.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
    finally:
        psutil.Process(job.pid).kill()
        job.wait()
        log.close()
    assert job.returncode == -9
    assert latest_checkpoint(Store(), output) == (SAVE_STEPS, checkpoint)
    assert not Store().artifact_exists(join(output, "final"))

    resumed = run_to_end(command)
    assert f"resuming from {checkpoint} (step {SAVE_STEPS})" in resumed
    rows = metric_rows(output)
    assert [row["step"] for row in rows] == list(range(1, RUN_STEPS + 1)), "each step logged once"
    for got, expected in zip(rows, want, strict=True):
        for key in ("reward", "rewards/clip/mean", "rewards/aesthetic/mean", "loss", "kl", "learning_rate"):
            assert got[key] == pytest.approx(expected[key], abs=RESUME_TOLERANCE), (got["step"], key)
    a = load_file(str(Path(output) / "final" / "model.safetensors"))
    b = load_file(str(Path(reference) / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= RESUME_TOLERANCE
    initial = load_file(str(Path(init_model) / "model.safetensors"))
    assert max(float((a[k] - initial[k]).abs().max()) for k in a) > 1e-4, "training changed the weights"
