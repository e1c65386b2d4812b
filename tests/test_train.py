"""`simplear train`: dataset, collator and checkpoint units; real DeepSpeed runs (2 ranks, gloo), killed and resumed."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from helpers import SHAPE
from PIL import Image
from safetensors.torch import load_file
from transformers import Qwen2ForCausalLM

from simplear.cli import main as cli_main
from simplear.config import PRESETS, SHAPES_RECIPES, TrainConfig, get_preset
from simplear.data.shapes import make_dataset
from simplear.data.tokenize.shards import TokenRecord, decode_shard, shard_uri, write_token_dataset
from simplear.model.prompt import TRAIN_PREFIXES, TRAINING_PREFIX_SETS, dropped_prompt, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel, qwen2_config
from simplear.model.text_tokenizer import build_text_tokenizer
from simplear.model.vocab import SOI, T2I
from simplear.s3_server import EmbeddedS3
from simplear.store import MANIFEST, ArtifactNotFound, Store, join
from simplear.train.checkpoints import checkpoint_uri, latest_checkpoint, publish_checkpoint
from simplear.train.job import single_process_launch_env
from simplear.train.pretrain import dataset_vision, deepspeed_config, initial_model, training_arguments
from simplear.train.token_data import IGNORE_INDEX, CodeCollator, TokenDataset, TokenRecords, repeats_for
from simplear.vision import PaletteTokenizer
from simplear.vision.base import pil_to_tensor

TINY = PRESETS["tiny"].model_copy(update={"shape": SHAPE})
CODES = TINY.vision.num_codes
NUM_RECORDS = 64
STEPS = 16
SAVE_STEPS = 6
KILL_AFTER = 6
RESUME_TOLERANCE = 1e-4
"""Largest |loss difference| allowed between a resumed and an uninterrupted run (see test_killed_run_resumes...)."""

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
RUN_TIMEOUT_S = 240


# ---------------------------------------------------------------- data


def shape_token_records(n: int, seed: int = 0) -> list[TokenRecord]:
    """Token records of the shapes data: palette codes of each image with its short and long caption."""
    shapes = make_dataset(n, seed)
    codes = PaletteTokenizer().encode(pil_to_tensor([Image.fromarray(r.image) for r in shapes]))
    return [TokenRecord(i, codes[i], r.short_caption, r.long_caption) for i, r in enumerate(shapes)]


def write_tiny_dataset(store: Store, root: str, records: list[TokenRecord], shard_size: int = 32) -> None:
    """A complete palette token dataset of the tiny preset at root."""
    write_token_dataset(store, root, records, "palette", TINY.vision.codebook_size, shard_size)


def caption_records(n: int) -> list[TokenRecord]:
    """Records with distinguishable captions and constant codes, for prompt statistics."""
    return [TokenRecord(i, torch.full((16, 16), i % 16), f"short caption {i}", f"long caption {i}") for i in range(n)]


def prompt_dataset(model: SimpleARModel, records: list[TokenRecord], **options: object) -> TokenDataset:
    """A TokenDataset over records with the default prompt options, `options` overriding them."""
    settings = {"seed": 0, "p_drop_cond": 0.1, "sample_short": True, "max_prompt_tokens": 128, "repeats": 1}
    return TokenDataset(records, model.tokenizer, model.vocab, **{**settings, **options})


@pytest.fixture(scope="module")
def tiny_model() -> SimpleARModel:
    """A randomly initialised model of the small test shape."""
    return SimpleARModel.random_init(TINY, seed=0)


@pytest.fixture(scope="module")
def shapes_records() -> list[TokenRecord]:
    """The shapes training records the runs use."""
    return shape_token_records(NUM_RECORDS)


@pytest.fixture(scope="module")
def token_data(tmp_path_factory: pytest.TempPathFactory, shapes_records: list[TokenRecord]) -> str:
    """A complete local token dataset of the shapes records, in two shards."""
    root = str(tmp_path_factory.mktemp("tokens") / "shapes")
    write_tiny_dataset(Store(), root, shapes_records)
    return root


# ---------------------------------------------------------------- units


@pytest.mark.parametrize("loss_on", ["all", "codes"])
def test_collator_labels_every_token_or_only_codes(tiny_model: SimpleARModel, loss_on: str) -> None:
    """Labels are -100 on padding, and with `codes` on the prompt too; the model's loss is the CE of the targets.

    `all` is upstream's (wdrink/SimpleAR simpar/train/preprocess.py `preprocess_t2i`: labels = a copy of input_ids):
    every token after the first, prompt text and <|soi|> included.
    """
    dataset = prompt_dataset(tiny_model, caption_records(3), p_drop_cond=0.0)
    examples = [dataset[i] for i in range(3)]
    pad = tiny_model.tokenizer.pad_token_id
    batch = CodeCollator(tiny_model.vocab, pad_id=pad, loss_on=loss_on)(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    assert len(set(lengths)) > 1, "the examples should need padding"
    assert batch["input_ids"].shape == (3, max(lengths))
    for row, example in enumerate(examples):
        n, prompt = lengths[row], lengths[row] - CODES
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert batch["input_ids"][row, :n].tolist() == example["input_ids"].tolist()
        assert (batch["input_ids"][row, n:] == pad).all()
        first = prompt if loss_on == "codes" else 0
        assert (batch["labels"][row, :first] == IGNORE_INDEX).all()
        assert batch["labels"][row, first:n].tolist() == example["input_ids"][first:].tolist()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert tiny_model.tokenizer.convert_ids_to_tokens(int(example["input_ids"][prompt - 1])) == SOI

    with torch.no_grad():
        out = tiny_model.lm(**batch)
    logits, targets = out.logits[:, :-1], batch["input_ids"][:, 1:]
    on_codes = (targets >= tiny_model.vocab.offset) & batch["attention_mask"][:, 1:].bool()
    real = batch["attention_mask"][:, 1:].bool()
    assert int(on_codes.sum()) == 3 * CODES
    expected = real if loss_on == "all" else on_codes
    assert (batch["labels"][:, 1:] != IGNORE_INDEX).equal(expected)
    other = on_codes if loss_on == "all" else real
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(logits[expected], targets[expected]), atol=1e-6)
    assert not torch.allclose(out.loss, torch.nn.functional.cross_entropy(logits[other], targets[other]), atol=1e-3)


def test_dataset_prompt_frequencies_with_a_fixed_seed(tiny_model: SimpleARModel) -> None:
    """Condition dropout ~10 %, each of the 22 prefixes ~1/22 of kept prompts, short and long captions ~1/2 each."""
    records = caption_records(50)
    dataset = prompt_dataset(tiny_model, records, seed=3, repeats=100)
    n = len(dataset)
    assert n == 5000
    dropped, prefixes, captions = 0, Counter(), Counter()
    for i in range(n):
        prompt = dataset.prompt(i)
        if prompt == dropped_prompt():
            dropped += 1
            continue
        assert prompt.startswith(T2I) and prompt.endswith(SOI)
        body = prompt[len(T2I) : -len(SOI)]
        record = dataset.record(i)
        kind = "short" if body.endswith(record.short) else "long"
        caption = record.short if kind == "short" else record.long
        assert body.endswith(caption), body
        prefixes[body[: len(body) - len(caption)]] += 1
        captions[kind] += 1
    assert abs(dropped / n - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)
    kept = n - dropped
    assert set(prefixes) == set(TRAIN_PREFIXES)
    expected, sigma = kept / len(TRAIN_PREFIXES), math.sqrt(kept * (1 / 22) * (21 / 22))
    assert all(abs(count - expected) < 5 * sigma for count in prefixes.values()), prefixes
    assert abs(captions["short"] / kept - 0.5) < 4 * math.sqrt(0.25 / kept)

    long_only = prompt_dataset(tiny_model, records, seed=3, sample_short=False, repeats=4)
    kept_prompts = [p for p in map(long_only.prompt, range(len(long_only))) if p != dropped_prompt()]
    assert kept_prompts and all("long caption" in p and "short caption" not in p for p in kept_prompts)


def test_generation_prefixes_train_on_the_prompt_generate_uses(tiny_model: SimpleARModel) -> None:
    """With the `generation` prefixes every kept prompt is exactly what generate conditions on: t2i_prompt(caption)."""
    records = caption_records(20)
    dataset = prompt_dataset(tiny_model, records, seed=3, repeats=20, prefixes=TRAINING_PREFIX_SETS["generation"])
    prompts = [dataset.prompt(i) for i in range(len(dataset))]
    kept = [(i, prompt) for i, prompt in enumerate(prompts) if prompt != dropped_prompt()]
    assert 300 < len(kept) < 400
    captions = [(dataset.record(i).short, dataset.record(i).long) for i, _ in kept]
    assert all(prompt in map(t2i_prompt, pair) for (_, prompt), pair in zip(kept, captions, strict=True))
    assert TrainConfig(stage="pretrain", data="d", output="o", max_steps=1).prompt_prefixes == "upstream"


def test_dataset_is_seeded_by_index_and_truncates_keeping_soi(tiny_model: SimpleARModel) -> None:
    """Same seed and index, same example whatever the length; another seed differs; truncation keeps <|soi|>."""
    records = caption_records(20)
    first = prompt_dataset(tiny_model, records, seed=1, repeats=2)
    longer = prompt_dataset(tiny_model, records, seed=1, repeats=5)
    other = prompt_dataset(tiny_model, records, seed=2, repeats=2)
    assert [first.prompt(i) for i in range(40)] == [longer.prompt(i) for i in range(40)]
    assert [first.prompt(i) for i in range(40)] != [other.prompt(i) for i in range(40)]
    assert [first.prompt(i) for i in range(20)] != [first.prompt(i) for i in range(20, 40)], "a new pass draws anew"
    example = first[5]["input_ids"]
    prompt_ids = tiny_model.tokenizer(first.prompt(5), add_special_tokens=False).input_ids
    assert example.tolist() == prompt_ids + (records[5].codes.flatten() + tiny_model.vocab.offset).tolist()

    kept = prompt_dataset(tiny_model, records, p_drop_cond=0.0)
    truncated = prompt_dataset(tiny_model, records, p_drop_cond=0.0, max_prompt_tokens=4)
    full, ids = kept.prompt_ids(0), truncated.prompt_ids(0)
    assert len(full) > 4 and ids == full[:3] + full[-1:]
    assert tiny_model.tokenizer.convert_ids_to_tokens(ids[-1]) == SOI
    assert repeats_for(64, max_steps=16, sequences_per_step=8) == 2
    assert repeats_for(64, max_steps=1, sequences_per_step=8) == 1


def test_token_records_download_a_complete_dataset(tmp_path: Path, shapes_records: list[TokenRecord]) -> None:
    """Records read back from the store equal the shards' records; a dataset without manifest is refused."""
    store, root = Store(), str(tmp_path / "store" / "tokens")
    write_tiny_dataset(store, root, shapes_records[:40], shard_size=16)
    records = TokenRecords.download(store, root, tmp_path / "local")
    assert len(records) == 40 and records.codebook_size == 16
    expected = [r for shard in range(3) for r in decode_shard(store.read(shard_uri(root, shard)))]
    for got, want in zip((records[i] for i in range(40)), expected, strict=True):
        assert (got.index, got.short, got.long) == (want.index, want.short, want.long)
        assert torch.equal(got.codes, want.codes)
    with pytest.raises(IndexError):
        records[40]
    store.delete(join(root, MANIFEST))
    with pytest.raises(ArtifactNotFound):
        TokenRecords.download(store, root, tmp_path / "again")


def test_latest_checkpoint_ignores_incomplete_ones(tmp_path: Path) -> None:
    """The newest checkpoint with a manifest wins, compared by step number; files without manifest are ignored."""
    store, output = Store(), str(tmp_path / "run")
    source = tmp_path / "files"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"w")
    assert latest_checkpoint(store, output) is None
    for step in (2, 9, 10):
        store.put_artifact(source, checkpoint_uri(output, step))
    store.write(join(checkpoint_uri(output, 30), "weights.bin"), b"half-uploaded")
    store.put_artifact(source, join(output, "checkpoints", "not-a-checkpoint"))
    assert latest_checkpoint(store, output) == (10, checkpoint_uri(output, 10))


def test_publish_checkpoint_uploads_files_then_manifest(tmp_path: Path) -> None:
    """One process publishes every file but the Trainer's pickled arguments; the result is a verifiable artifact."""
    store, uri = Store(), checkpoint_uri(str(tmp_path / "run"), 4)
    local = tmp_path / "checkpoint-4"
    (local / "global_step4").mkdir(parents=True)
    (local / "global_step4" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"optimizer")
    (local / "model.safetensors").write_bytes(b"weights")
    (local / "training_args.bin").write_bytes(b"pickle")
    store.write(join(uri, MANIFEST), b"{stale}")
    manifest = publish_checkpoint(store, local, uri)
    assert manifest is not None
    assert [f["path"] for f in manifest["files"]] == [
        "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "model.safetensors",
    ]
    store.get_artifact(uri, tmp_path / "back")
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == b"weights"
    assert not (tmp_path / "back" / "training_args.bin").exists()


def test_packaged_deepspeed_configs() -> None:
    """ZeRO-2 and ZeRO-3 configs ship in the package, use torch's AdamW, and ZeRO-3 gathers weights to save them."""
    for stage in (2, 3):
        config = deepspeed_config(stage)
        assert config["zero_optimization"]["stage"] == stage
        assert config["optimizer"]["params"]["torch_adam"] is True
        assert config["bf16"]["enabled"] == "auto"
    assert deepspeed_config(3)["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    with pytest.raises(ValueError):
        deepspeed_config(1)


@pytest.mark.parametrize(("reduce_bucket_size", "collectives"), [(None, 1), (0, 65)])
def test_zero_reduces_a_tiny_models_gradients_in_few_collectives(
    reduce_bucket_size: int | None, collectives: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket the Trainer hands DeepSpeed once transformers has filled its 'auto' values: by default one
    collective reduces the tiny model's 1.05 M gradients; 0 leaves transformers' hidden_size^2 (128^2), 65 of them
    (transformers/integrations/deepspeed.py `trainer_config_finalize`; bench/sft_throughput.py times the two)."""
    for name, value in single_process_launch_env().items():
        monkeypatch.setenv(name, value)
    chosen = {} if reduce_bucket_size is None else {"reduce_bucket_size": reduce_bucket_size}
    config = TrainConfig(stage="pretrain", data="tokens", output="run", max_steps=10, **chosen)
    model = SimpleARModel.random_init(get_preset("tiny"), seed=0)
    args = training_arguments(config, tmp_path)
    args.hf_deepspeed_config.trainer_config_finalize(args, model.lm, 10)
    bucket = args.hf_deepspeed_config.config["zero_optimization"]["reduce_bucket_size"]
    gradients = sum(parameter.numel() for parameter in model.lm.parameters())
    assert math.ceil(gradients / bucket) == collectives


def test_train_config_rules() -> None:
    """Upstream's optimisation by default; init_from goes with text_lm/checkpoint only, and SFT starts from a model.

    Upstream (wdrink/SimpleAR docs/TRAIN.md, pretrain and SFT): --learning-rate 1e-4 --weight_decay 0.01
    --warmup_ratio 0.0 --lr_scheduler_type constant, loss on every token (simpar/train/preprocess.py).
    """
    base = {"stage": "pretrain", "data": "d", "output": "o", "max_steps": 1}
    config = TrainConfig(**base)
    assert config.init == "random"
    assert (config.learning_rate, config.lr_schedule, config.warmup_steps) == (1e-4, "constant", 0)
    assert (config.weight_decay, config.loss_on) == (0.01, "all")
    shapes = SHAPES_RECIPES["full"]
    assert (shapes.train_lr_schedule, shapes.train_weight_decay, shapes.train_loss_on) == ("cosine", 0.0, "all")
    assert (config.adam_beta2, shapes.train_adam_beta2) == (0.999, 0.95), "upstream: the HF Trainer's default"
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig(**base, init="checkpoint")
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig(**base, init_from="somewhere")
    with pytest.raises(ValueError, match="sft"):
        TrainConfig(**{**base, "stage": "sft"})
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(**base, preset="huge")


def test_cli_refuses_an_invalid_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    """An SFT run without a model to start from stops before any work with exit status 2 and says why."""
    assert cli_main(["train", "--stage", "sft", "--data", "d", "--output", "o", "--max-steps", "1"]) == 2
    assert "sft fine-tunes a model" in capsys.readouterr().err


def test_initial_model_from_a_text_lm_grows_the_vocabulary(tmp_path: Path) -> None:
    """init text_lm appends one mean-initialised row per code; a codebook that disagrees with the data is refused."""
    tokenizer = build_text_tokenizer()
    text_lm = Qwen2ForCausalLM(qwen2_config(SHAPE, len(tokenizer)))
    text_lm.save_pretrained(tmp_path / "text-lm")
    tokenizer.save_pretrained(tmp_path / "text-lm")
    base = {"stage": "pretrain", "data": "d", "output": "o", "max_steps": 1}
    config = TrainConfig(**base, init="text_lm", init_from=str(tmp_path / "text-lm"))
    model = initial_model(config, codebook_size=16, store=Store())
    rows = model.lm.get_input_embeddings().weight
    assert model.vocab.offset == len(tokenizer) and model.vocab.codebook_size == 16
    assert rows.shape[0] == len(tokenizer) + 16
    assert torch.allclose(rows[-16:], text_lm.get_input_embeddings().weight.mean(dim=0).expand(16, -1), atol=1e-6)
    with pytest.raises(ValueError, match="visual codes"):
        initial_model(TrainConfig(**base, shape=SHAPE), codebook_size=64, store=Store())


def test_the_model_records_the_visual_tokenizer_its_data_was_made_with() -> None:
    """A Cosmos token dataset (manifest: kind, resolution, checkpoint) gives the Cosmos tokenizer at that resolution
    whatever the preset; a palette one keeps the preset's palette at its resolution."""
    base = {"stage": "pretrain", "data": "d", "output": "o", "max_steps": 1}
    cosmos = dataset_vision(TrainConfig(**base), {"vision": "cosmos", "resolution": 64, "codebook_size": 64_000,
                                                  "vision_checkpoint": "s3://models/cosmos"})
    assert (cosmos.kind, cosmos.resolution, cosmos.grid, cosmos.checkpoint) == ("cosmos", 64, 4, "s3://models/cosmos")
    palette = dataset_vision(TrainConfig(**base, preset="tiny"), {"vision": "palette", "resolution": 32})
    assert palette == get_preset("tiny").vision.model_copy(update={"resolution": 32})
    assert dataset_vision(TrainConfig(**base), {}) == get_preset("tiny").vision


# ---------------------------------------------------------------- real runs (torchrun, 2 ranks, DeepSpeed on CPU)


@dataclass(frozen=True)
class Run:
    """A finished uninterrupted training run: its store, data and output URIs, environment and per-rank stderr."""

    store: Store
    data: str
    output: str
    zero: int
    env: dict[str, str]
    stderr: dict[int, str]
    scratch: Path


def train_command(
    config: Path, data: str, output: str, scratch: Path, zero: int, log_dir: Path | None = None
) -> list[str]:
    """torchrun with 2 ranks running `simplear train` on the small shape."""
    logs = ["--log_dir", str(log_dir), "--tee", "3"] if log_dir else []
    return [
        TORCHRUN, "--standalone", "--nproc_per_node", "2", *logs, "-m", "simplear.cli", "train",
        "--config", str(config), "--stage", "pretrain", "--data", data, "--output", output,
        "--zero-stage", str(zero), "--max-steps", str(STEPS), "--batch-size", "4", "--learning-rate", "3e-3",
        "--save-steps", str(SAVE_STEPS), "--logging-steps", "1", "--precision", "fp32", "--seed", "7",
        "--scratch", str(scratch),
    ]  # fmt: skip


def shape_config(directory: Path) -> Path:
    """A TrainConfig YAML holding the small model shape and the shapes recipe's AdamW beta2."""
    path = directory / "train.yaml"
    shapes_beta2 = SHAPES_RECIPES["full"].train_adam_beta2
    path.write_text(yaml.safe_dump({"shape": SHAPE.model_dump(), "adam_beta2": shapes_beta2}))
    return path


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun starts each rank in a session of its own)."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def run_training(command: list[str], env: dict[str, str]) -> str:
    """Run a training job to the end; its combined output (the test fails with it if the job fails or hangs)."""
    job = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = job.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(job.pid)
        output, _ = job.communicate()
        pytest.fail(f"training did not finish in {RUN_TIMEOUT_S} s:\n{output[-6000:]}")
    assert job.returncode == 0, output[-6000:]
    return output


def reference_run(base: Path, store: Store, data: str, output: str, zero: int, env: dict[str, str]) -> Run:
    """An uninterrupted run, each rank with its own scratch disk and its own log files."""
    log_dir = base / "torchrun-logs"
    run_training(train_command(shape_config(base), data, output, base / "scratch", zero, log_dir), env)
    stderr = {rank: next(log_dir.rglob(f"attempt_0/{rank}/stderr.log")).read_text() for rank in (0, 1)}
    return Run(store, data, output, zero, env, stderr, base / "scratch")


def metrics(store: Store, output: str) -> list[dict]:
    """The run's JSONL metric rows."""
    return [json.loads(line) for line in store.read(join(output, "logs", "train.jsonl")).decode().splitlines()]


def final_weights(store: Store, output: str) -> dict[str, torch.Tensor]:
    """The tensors of a run's final model."""
    with tempfile.TemporaryDirectory() as tmp:
        store.get_artifact(join(output, "final"), Path(tmp) / "final")
        return load_file(Path(tmp) / "final" / "model.safetensors")


def assert_trained(run: Run) -> None:
    """Every step logged once with throughput, the loss fell, and the final model loads with the trained shape."""
    rows = metrics(run.store, run.output)
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    losses = [row["loss"] for row in rows]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 1.0, losses
    assert all(row["tokens_per_second"] > 0 and row["step_time_s"] > 0 for row in rows)
    assert rows[-1]["tokens_seen"] >= STEPS * 8 * (CODES + 2), "2 ranks x 4 sequences of prompt + codes per step"
    assert latest_checkpoint(run.store, run.output) == (STEPS, checkpoint_uri(run.output, STEPS))
    final = SimpleARModel.load(join(run.output, "final"), store=run.store)
    assert final.vocab.codebook_size == TINY.vision.codebook_size
    assert final.vision == TINY.vision, "the final model carries the visual tokenizer it was trained for"
    assert final.lm.config.num_hidden_layers == SHAPE.num_layers
    initial = SimpleARModel.random_init(TINY, seed=7).lm.get_input_embeddings().weight
    assert not torch.allclose(final.lm.get_input_embeddings().weight, initial), "training changed the weights"
    assert "16/16" in run.stderr[0], "rank 0 shows the progress bar"
    assert not any(bar in run.stderr[1] for bar in ("it/s]", "s/it]")), "rank 1 shows none"
    assert not any(run.scratch.rglob("*.pt*")), "local checkpoint copies are removed"


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory: pytest.TempPathFactory, token_data: str) -> Run:
    """An uninterrupted ZeRO-2 run on a local store."""
    base = tmp_path_factory.mktemp("zero2")
    return reference_run(base, Store(), token_data, str(base / "store" / "run"), 2, {})


@pytest.fixture(scope="module")
def zero3_run(
    tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3, shapes_records: list[TokenRecord]
) -> Run:
    """An uninterrupted ZeRO-3 run whose data and output live on the S3 server."""
    bucket = "train-" + secrets.token_hex(6)
    s3_server.create_bucket(bucket)
    store = Store(s3_server.settings())
    data = f"s3://{bucket}/tokens"
    write_tiny_dataset(store, data, shapes_records)
    base = tmp_path_factory.mktemp("zero3")
    return reference_run(base, store, data, f"s3://{bucket}/runs/reference", 3, s3_server.env())


def test_zero2_run_trains_checkpoints_and_logs(zero2_run: Run) -> None:
    """ZeRO-2: loss falls; checkpoints hold each rank's optimizer shard (AdamW with the configured betas) and RNG;
    JSONL and TensorBoard in the store."""
    assert_trained(zero2_run)
    store, output = zero2_run.store, zero2_run.output
    files = {f["path"] for f in store.read_manifest(checkpoint_uri(output, SAVE_STEPS))["files"]}
    step_dir = f"global_step{SAVE_STEPS}"
    with tempfile.TemporaryDirectory() as tmp:
        store.get_artifact(checkpoint_uri(output, SAVE_STEPS), Path(tmp) / "checkpoint")
        shard = torch.load(Path(tmp) / "checkpoint" / step_dir / "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                           map_location="cpu", weights_only=False)
    groups = shard["optimizer_state_dict"]["base_optimizer_state"]["param_groups"]
    assert [group["betas"] for group in groups] == [(0.9, SHAPES_RECIPES["full"].train_adam_beta2)] * len(groups)
    shared = {"model.safetensors", "config.json", "tokenizer.json", "trainer_state.json"}
    per_rank = {f"rng_state_{r}.pth" for r in (0, 1)} | {
        f"{step_dir}/zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)
    }
    assert shared | per_rank <= files
    assert "training_args.bin" not in files
    events = store.list(join(output, "tensorboard"))
    assert len(events) == 1 and "tfevents" in events[0] and len(store.read(events[0])) > 0


def test_zero3_run_on_s3_trains(zero3_run: Run) -> None:
    """ZeRO-3 on the S3 store: loss falls; checkpoints hold every rank's weight and optimizer partitions."""
    assert_trained(zero3_run)
    files = {f["path"] for f in zero3_run.store.read_manifest(checkpoint_uri(zero3_run.output, SAVE_STEPS))["files"]}
    step_dir = f"global_step{SAVE_STEPS}"
    partitions = {
        f"{step_dir}/zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")
    }
    assert partitions | {"model.safetensors"} <= files


@pytest.mark.parametrize("reference", ["zero2_run", "zero3_run"])
def test_killed_run_resumes_from_last_checkpoint(
    reference: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGKILL right after checkpoint 6; the restart skips a later incomplete one, resumes at 6, matches the reference.

    Tolerance: the resumed run restores fp32 weights, Adam moments, scheduler, RNG and data position exactly, and on
    CPU with the same 2-rank gloo topology every reduction runs in the same order, so the losses agree to float
    rounding (measured: bit-identical). RESUME_TOLERANCE = 1e-4 leaves room for reassociation noise (~1e-6) while a
    resume that loses a piece of state fails: the loss moves by ~0.1 per step here, and restarting the Adam moments
    or replaying other batches moves the following losses by far more than 1e-4.
    """
    run: Run = request.getfixturevalue(reference)
    store, output = run.store, join(run.output.rsplit("/", 1)[0], "killed-" + tmp_path.name)
    command = train_command(shape_config(tmp_path), run.data, output, tmp_path / "scratch", run.zero)
    log = (tmp_path / "killed.log").open("w")
    job = subprocess.Popen(
        command, env={**os.environ, **run.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    checkpoint = checkpoint_uri(output, KILL_AFTER)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not store.artifact_exists(checkpoint):
            assert job.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
    finally:
        kill_tree(job.pid)
        job.wait()
        log.close()
    assert job.returncode == -9
    assert latest_checkpoint(store, output) == (KILL_AFTER, checkpoint)
    assert not store.artifact_exists(join(output, "final"))

    incomplete = checkpoint_uri(output, KILL_AFTER + SAVE_STEPS)
    for entry in store.read_manifest(checkpoint)["files"][:5]:
        store.write(join(incomplete, entry["path"]), store.read(join(checkpoint, entry["path"])))

    resumed = run_training(command, run.env)
    assert f"resuming from {checkpoint} (step {KILL_AFTER})" in resumed
    rows, want = metrics(store, output), metrics(store, run.output)
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1)), "each step logged once, none lost or repeated"
    for got, expected in zip(rows, want, strict=True):
        assert abs(got["loss"] - expected["loss"]) <= RESUME_TOLERANCE, (got["step"], got["loss"], expected["loss"])
        assert got["learning_rate"] == pytest.approx(expected["learning_rate"], rel=1e-9)
        assert got["tokens_seen"] == expected["tokens_seen"]
    a, b = final_weights(store, output), final_weights(store, run.output)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= RESUME_TOLERANCE


def test_resume_with_other_settings_is_refused_naming_them(zero2_run: Run, tmp_path: Path) -> None:
    """Rerunning into a finished run's output with another learning rate and seed exits 1 naming both, in one line."""
    base = train_command(shape_config(tmp_path), zero2_run.data, zero2_run.output, tmp_path / "scratch", 2)
    command = [sys.executable, *base[base.index("-m"):]]
    command[command.index("--learning-rate") + 1] = "1e-3"
    command[command.index("--seed") + 1] = "8"
    done = subprocess.run(command, env={**os.environ, **zero2_run.env}, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("simplear train: error:")]
    assert f"{zero2_run.output} holds a simplear train run with other settings" in line
    assert "learning_rate: 0.003 there, 0.001 now, seed: 7 there, 8 now" in line
    assert line.endswith("resume it with the same settings or choose a new --output")
    assert metrics(zero2_run.store, zero2_run.output)[-1]["step"] == STEPS, "the finished run is untouched"


def test_single_process_sft_starts_from_the_pretrained_model(zero2_run: Run, tmp_path: Path) -> None:
    """`simplear train --stage sft` without torchrun, from the pretrain run's final model, on long captions only."""
    output = str(tmp_path / "store" / "sft")
    command = [
        sys.executable, "-m", "simplear.cli", "train", "--stage", "sft", "--init", "checkpoint",
        "--init-from", join(zero2_run.output, "final"), "--data", zero2_run.data, "--output", output,
        "--no-sample-short", "--max-steps", "4", "--batch-size", "4", "--learning-rate", "1e-3",
        "--save-steps", "2", "--logging-steps", "1", "--precision", "fp32", "--scratch", str(tmp_path / "scratch"),
        "--no-tensorboard",
    ]  # fmt: skip
    summary = [line for line in run_training(command, {}).splitlines() if line.startswith('{"final"')]
    assert [json.loads(line) for line in summary] == [
        {"final": join(output, "final"), "steps": 4, "resumed_from": None}
    ]
    rows, pretrain = metrics(Store(), output), metrics(Store(), zero2_run.output)
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert rows[0]["loss"] < pretrain[0]["loss"] - 1.0, "SFT starts from the trained weights, not from scratch"
    assert latest_checkpoint(Store(), output) == (4, checkpoint_uri(output, 4))
    assert not Store().list(join(output, "tensorboard"))
    assert SimpleARModel.load(join(output, "final")).vocab.codebook_size == TINY.vision.codebook_size
