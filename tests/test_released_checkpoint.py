"""A checkpoint in the layout SimpleAR releases loads everywhere: generate, serve, the vLLM engine, training, GRPO.

The layout (wdrink/SimpleAR, checkpoints on the Hugging Face hub under Daniel0724/SimpleAR-*): config.json of a
Qwen2.5 decoder (transformers 4.x keys) naming `SimpARForCausalLM`, the Qwen2ForCausalLM subclass of
simpar/model/language_model/simpar_qwen2.py; the vocabulary grown as simpar/train/train.py does it
(`smart_tokenizer_and_embedding_resize`: the 7 special tokens, then 64,000 code rows, so vocab_size =
151,665 + 7 + 64,000 = 215,672, no codebook key); the Qwen2 weight names of simpar/model/language_model/
modeling_qwen2.py in safetensors (bf16, the head tied to the embedding as in Qwen2.5-0.5B); tokenizer files holding
the special tokens; and a generation_config.json as Qwen2.5-Instruct carries one (repetition penalty 1.1).
Dimensions are tiny; the visual tokenizer is the scripted Cosmos stand-in of tests/helpers.py (64,000 codes).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from helpers import transformers_penalized_guided, write_fake_cosmos
from PIL import Image
from prometheus_client import CollectorRegistry
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from simplear.cli import main
from simplear.config import (
    COSMOS_CODEBOOK_SIZE,
    QWEN25_TEXT_VOCAB,
    GRPOTrainConfig,
    SamplingConfig,
    ServeConfig,
    ServeLimits,
)
from simplear.data.tokenize.shards import TokenRecord, write_token_dataset
from simplear.model.simplear_lm import SimpleARModel
from simplear.model.text_tokenizer import build_text_tokenizer
from simplear.model.vocab import SPECIAL_TOKENS
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.serve.metrics import ServeMetrics
from simplear.serve.model import SimpleARPredictor
from simplear.store import Store
from simplear.train.grpo.rewards import REWARD_BUILDERS, register_reward
from simplear.train.grpo.trainer import train_grpo
from simplear.train.rollout.server import RolloutServerProcess

pytestmark = pytest.mark.slow
LAYERS = 2
CONFIG = {
    "architectures": ["SimpARForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
    "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
    "max_position_embeddings": 1024, "max_window_layers": LAYERS, "model_type": "qwen2", "num_attention_heads": 2,
    "num_hidden_layers": LAYERS, "num_key_value_heads": 1, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000.0, "sliding_window": 1024, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.49.0.dev0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": QWEN25_TEXT_VOCAB + COSMOS_CODEBOOK_SIZE,
}
GENERATION_CONFIG = {
    "bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
    "repetition_penalty": 1.1, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "transformers_version": "4.49.0.dev0",
}
WEIGHT_NAMES = {"model.embed_tokens.weight", "model.norm.weight"} | {
    f"model.layers.{i}.{name}" for i in range(LAYERS) for name in (
        "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
        "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
        "mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight",
    )
}
REFUSAL = ("--preset", "--vision-checkpoint")
PROMPT = "a red circle above a blue square"


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint in the released layout."""
    path = tmp_path_factory.mktemp("released") / "SimpleAR-tiny-RL"
    path.mkdir()
    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(Qwen2Config(**CONFIG))
    with torch.no_grad():
        lm.lm_head.weight.mul_(8.0)  # peaked next-code distributions, so that a repetition penalty shows
    weights = {name: tensor.to(torch.bfloat16).contiguous() for name, tensor in lm.state_dict().items()
               if name != "lm_head.weight"}
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(CONFIG, indent=2))
    (path / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    build_text_tokenizer(total_size=QWEN25_TEXT_VOCAB).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def cosmos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripted Cosmos stand-in: encoder.jit / decoder.jit over 64,000 codes."""
    return write_fake_cosmos(tmp_path_factory.mktemp("cosmos"))


@pytest.fixture(scope="module", autouse=True)
def redness() -> Iterator[None]:
    """A dense reward for the GRPO run: the mean red level of the image."""
    register_reward("redness", lambda spec, context: lambda prompts, images, metadata: [
        float(np.asarray(image)[..., 0].mean() / 255) for image in images])
    yield
    REWARD_BUILDERS.pop("redness")


def test_the_layout_is_the_released_one(released: Path) -> None:
    """Weight names, vocabulary arithmetic and special tokens as released; it loads as 151,672 text ids + 64,000."""
    from safetensors import safe_open

    with safe_open(released / "model.safetensors", "pt") as weights:
        assert set(weights.keys()) == WEIGHT_NAMES
    model = SimpleARModel.load(released)
    assert (model.vocab.offset, model.vocab.codebook_size) == (151_672, 64_000)
    assert model.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(151_665, 151_672))
    assert model.vision is None and model.generation.repetition_penalty == 1.1
    torch.testing.assert_close(model.lm.lm_head.weight, model.lm.get_input_embeddings().weight)


def test_generate_refuses_the_preset_codebook_then_generates(
    released: Path, cosmos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --preset the tiny palette (16 codes) is refused before sampling; with the Cosmos one it generates."""
    base = ["generate", "--model", str(released), "--prompt", PROMPT, "--n", "2", "--resolution", "64"]
    with pytest.raises(SystemExit) as refused:
        main([*base, "--out", str(tmp_path / "refused")])
    assert "writes 64000 visual codes" in str(refused.value) and all(flag in str(refused.value) for flag in REFUSAL)
    assert not (tmp_path / "refused").exists()
    assert main([*base, "--preset", "0.5B", "--vision-checkpoint", str(cosmos), "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert record["settings"]["repetition_penalty"] == 1.1, "the checkpoint's generation_config.json"
    assert Image.open(tmp_path / "out" / "00000-01.png").size == (64, 64)


def test_serve_refuses_the_preset_codebook_then_serves(released: Path, cosmos: Path) -> None:
    """The server's load() refuses it without the Cosmos preset; with it, v1 answers with the penalised codes.

    `simplear serve` exits with load()'s message; it is called here directly so as not to register its
    metrics in the process-wide Prometheus registry.
    """
    refused = SimpleARPredictor(ServeConfig(model_dir=str(released), device="cpu"), ServeMetrics(CollectorRegistry()))
    with pytest.raises(ValueError, match="writes 64000 visual codes") as error:
        refused.load()
    assert all(flag in str(error.value) for flag in REFUSAL) and refused.generator is None
    limits = ServeLimits(resolutions=(64,), max_prompt_tokens=64)
    served = {}
    for codes_only in (False, True):
        config = ServeConfig(model_dir=str(released), preset="0.5B", vision_checkpoint=str(cosmos), device="cpu",
                             codes_only=codes_only, limits=limits)
        predictor = SimpleARPredictor(config, ServeMetrics(CollectorRegistry()))
        assert predictor.load()
        served[codes_only] = asyncio.run(predictor.predict({"instances": [{"prompt": PROMPT, "seed": 5}]}))
        predictor.stop()
    image = Image.open(io.BytesIO(base64.b64decode(served[False]["predictions"][0]["image_b64"])))
    assert image.size == (64, 64)
    expected = Sampler(SimpleARModel.load(released)).generate(
        [Request(PROMPT, SamplingConfig(seed=5, repetition_penalty=1.1))], 16)
    assert served[True]["predictions"][0]["codes"] == expected[0].tolist()


def test_vllm_engine_runs_it_as_qwen2_with_its_repetition_penalty(released: Path, vllm_python: Path) -> None:
    """vLLM loads `SimpARForCausalLM` as Qwen2ForCausalLM; its guided codes follow transformers with the penalty."""
    args = ["--engine", "vllm", "--device", "cpu", "--model", str(released)]
    with RolloutServerProcess(args, python=vllm_python, startup_timeout_s=300) as server:
        health = requests.get(f"{server.url}/health", timeout=60).json()
        body = {"prompts": [PROMPT], "n": 2, "num_codes": 16, "cfg_scale": 3.0, "seed": 4, "repetition_penalty": None}
        answer = requests.post(f"{server.url}/generate", json=body, timeout=300)
    assert (health["codebook_size"], health["max_positions"]) == (64_000, 1024)
    assert answer.status_code == 200, answer.text
    model = SimpleARModel.load(released)
    request = Request(PROMPT, SamplingConfig(cfg_scale=3.0, repetition_penalty=1.1))
    for codes, logprobs in zip(answer.json()["codes"], answer.json()["logprobs"], strict=True):
        codes = torch.tensor(codes)
        expected = transformers_penalized_guided(model, request, codes).gather(1, codes[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(logprobs), expected, atol=1e-3, rtol=1e-3)


def test_training_and_grpo_start_from_it(released: Path, cosmos: Path, tmp_path: Path) -> None:
    """`train --init checkpoint` fine-tunes it on Cosmos codes; GRPO aligns it; both save loadable checkpoints."""
    generator = torch.Generator().manual_seed(0)
    records = [TokenRecord(i, torch.randint(0, COSMOS_CODEBOOK_SIZE, (4, 4), generator=generator), f"shape {i}",
                           f"a long caption of shape {i}") for i in range(8)]
    write_token_dataset(Store(), str(tmp_path / "tokens"), records, "cosmos", COSMOS_CODEBOOK_SIZE)
    command = [sys.executable, "-m", "simplear.cli", "train", "--stage", "sft", "--init", "checkpoint",
               "--init-from", str(released), "--preset", "0.5B", "--data", str(tmp_path / "tokens"),
               "--output", str(tmp_path / "sft"), "--max-steps", "2", "--batch-size", "2", "--precision", "fp32",
               "--save-steps", "2", "--no-tensorboard", "--scratch", str(tmp_path / "scratch")]
    job = subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert job.returncode == 0, job.stderr[-4000:]
    tuned = SimpleARModel.load(tmp_path / "sft" / "final")
    assert tuned.vocab == SimpleARModel.load(released).vocab and tuned.vision.kind == "cosmos"
    assert tuned.generation.repetition_penalty == 1.1, "the released generation_config.json travels with it"

    meta = tmp_path / "prompts.jsonl"
    meta.write_text("".join(json.dumps({"image_path": f"{i}.png", "caption": f"shape {i}"}) + "\n" for i in range(4)))
    config = GRPOTrainConfig(prompts=str(meta), init_from=str(released), output=str(tmp_path / "grpo"),
                             preset="0.5B", vision_checkpoint=str(cosmos), resolution=64,
                             rewards=[{"name": "redness"}], batch_size=4, num_generations=2, max_steps=1,
                             tensorboard=False, scratch=str(tmp_path / "grpo-scratch"))
    result = train_grpo(config, Store())
    aligned = SimpleARModel.load(result.final)
    assert result.steps == 1 and aligned.vocab.codebook_size == 64_000 and aligned.vision.resolution == 1024
    assert len(result.reward_curve) == 1
