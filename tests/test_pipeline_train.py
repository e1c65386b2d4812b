"""`simplear-train` on the user's own data, run from its compiled YAML by kfp.local against a real S3 server.

The user's side is built here: captioned images and meta files of three formats in a bucket, the scripted Cosmos
stand-in (64,000 codes, 16 px per code), a tiny Qwen2 text LM with a plain text tokenizer and the tiny CLIP with a
LAION-format aesthetic head (stand-ins from tests/helpers.py), the models uploaded with `simplear upload`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import write_aesthetic_head, write_fake_cosmos, write_tiny_clip
from kfp import components, local
from PIL import Image
from transformers import Qwen2ForCausalLM

from simplear.config import COSMOS_CODEBOOK_SIZE, ModelShape
from simplear.model.simplear_lm import SimpleARModel, qwen2_config
from simplear.model.text_tokenizer import build_text_tokenizer
from simplear.s3_server import EmbeddedS3
from simplear.store import Store, join

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # pipelines/ is a folder of the repository, not an installed package

from pipelines.compile import COMPILED  # noqa: E402
from pipelines.components.existing import existing_checkpoints  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning:kfp.local.orchestrator.task_executor"),
              pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")]
TEXT_LM_SHAPE = ModelShape(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1,
                           max_position_embeddings=1024)
RESOLUTION = 64
COLOURS = {"red": (230, 25, 75), "green": (60, 180, 75), "blue": (0, 130, 200), "yellow": (255, 225, 25)}
GENEVAL = [{"tag": "single_object", "include": [{"class": "apple", "count": 1}], "prompt": "a photo of an apple"},
           {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}],
            "prompt": "a photo of a red car"}]


@pytest.fixture
def s3_environment(s3_server: EmbeddedS3) -> Iterator[dict[str, str]]:
    """The session's S3 server in this process's environment, which every stage process inherits."""
    saved = dict(os.environ)
    os.environ.update(s3_server.env())
    yield s3_server.env()
    os.environ.clear()
    os.environ.update(saved)


def flat_image(colour: tuple[int, int, int], split: tuple[int, int, int]) -> Image.Image:
    """A 64 px image of two flat halves, on the 16 px blocks the Cosmos stand-in reads exactly."""
    pixels = np.zeros((RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    pixels[:, : RESOLUTION // 2], pixels[:, RESOLUTION // 2 :] = colour, split
    return Image.fromarray(pixels)


def upload(folder: Path, uri: str) -> None:
    """`simplear upload folder uri`, as a user puts a model into the store."""
    subprocess.run([sys.executable, "-m", "simplear.cli", "upload", str(folder), uri], check=True,
                   capture_output=True, text=True)


def user_side(store: Store, bucket: str, local_dir: Path) -> dict[str, str]:
    """The user's images, meta files (JSON, JSONL, a mixing YAML), GenEval prompts and models in the bucket."""
    records = []
    for index, (name, colour) in enumerate(COLOURS.items()):
        for other_index, (other, split) in enumerate(COLOURS.items()):
            uri = join(bucket, "images", f"{index}{other_index}.png")
            path = local_dir / f"{index}{other_index}.png"
            flat_image(colour, split).save(path)
            store.upload_file(path, uri)
            records.append({"image_path": uri, "caption": {"short": f"{name} and {other}",
                                                           "long": f"a {name} half beside a {other} half"}})
    store.write(join(bucket, "meta", "part-a.json"), json.dumps(records[:8]).encode())
    store.write(join(bucket, "meta", "part-b.jsonl"), "".join(json.dumps(r) + "\n" for r in records[8:]).encode())
    mix = {"datasets": [{"json_path": join(bucket, "meta", "part-a.json"), "sampling_strategy": "all"},
                        {"json_path": join(bucket, "meta", "part-b.jsonl"), "sampling_strategy": "first:6"}]}
    store.write(join(bucket, "meta", "pretrain.yaml"), yaml.safe_dump(mix).encode())
    store.write(join(bucket, "meta", "sft.jsonl"), "".join(json.dumps(r) + "\n" for r in records[::2]).encode())
    store.write(join(bucket, "geneval", "evaluation_metadata.jsonl"),
                "".join(json.dumps(p) + "\n" for p in GENEVAL).encode())
    upload(write_fake_cosmos(local_dir / "cosmos"), join(bucket, "models", "cosmos"))
    tokenizer = build_text_tokenizer(simplear_specials=False)
    torch.manual_seed(0)
    Qwen2ForCausalLM(qwen2_config(TEXT_LM_SHAPE, len(tokenizer))).save_pretrained(local_dir / "text-lm")
    tokenizer.save_pretrained(local_dir / "text-lm")
    upload(local_dir / "text-lm", join(bucket, "models", "qwen"))
    upload(write_tiny_clip(local_dir / "clip"), join(bucket, "models", "clip"))
    store.upload_file(write_aesthetic_head(local_dir / "aesthetic.safetensors"),
                      join(bucket, "models", "aesthetic.safetensors"))
    return {"pretrain_meta_uri": join(bucket, "meta", "pretrain.yaml"),
            "sft_meta_uri": join(bucket, "meta", "sft.jsonl"),
            "eval_data_uri": join(bucket, "geneval"), "vision_checkpoint_uri": join(bucket, "models", "cosmos"),
            "text_lm_uri": join(bucket, "models", "qwen"), "clip_model_uri": join(bucket, "models", "clip"),
            "aesthetic_head_uri": join(bucket, "models", "aesthetic.safetensors")}


def test_simplear_train_runs_every_stage_on_the_users_data(
    s3_store: tuple[Store, str], s3_environment: dict[str, str], tmp_path: Path
) -> None:
    """Tokenize (mixing YAML and JSONL), pretrain from the text LM, SFT, GRPO on CLIP + aesthetic, GenEval-layout
    evaluation with upstream's protocol, deploy: every stage reads the Cosmos tokenizer from the checkpoint."""
    store, bucket = s3_store
    inputs = user_side(store, bucket, tmp_path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               workspace_root=str(tmp_path / "workspace"), raise_on_error=True)
    (tmp_path / "workspace").mkdir()
    pipeline = components.load_component_from_file(str(COMPILED / "simplear-train.yaml"))
    root = join(bucket, "runs", "mine")
    report = pipeline(
        **inputs, backend="local", store_root=join(bucket, "runs"), run_tag="mine", runs_dir=str(tmp_path / "runs"),
        preset="0.5B", resolution=RESOLUTION, procs_per_node=1, batch_size=4, pretrain_steps=2, sft_steps=2,
        grpo_steps=1, grpo_batch_size=4, grpo_num_generations=2, grpo_rewards="clip:0.7,aesthetic:0.3",
        rollout="in_process", rollout_engine="torch", eval_images_per_prompt=4, stage_timeout_minutes=20,
    ).output
    assert report == join(root, "report")

    manifest = store.read_manifest(join(root, "tokens", "pretrain"))["tokens"]
    assert manifest["num_records"] == 14, "8 of the JSON list and the first 6 of the JSONL"
    assert (manifest["vision"], manifest["resolution"]) == ("cosmos", RESOLUTION)
    assert manifest["vision_checkpoint"] == inputs["vision_checkpoint_uri"]

    pretrained = SimpleARModel.load(join(root, "models", "pretrain", "final"), store=store)
    text_vocab = len(build_text_tokenizer(simplear_specials=False))
    assert pretrained.lm.config.hidden_size == TEXT_LM_SHAPE.hidden_size, "the text LM's shape, not the preset's"
    assert pretrained.vocab.offset == text_vocab + 7 and pretrained.vocab.codebook_size == COSMOS_CODEBOOK_SIZE
    assert pretrained.vision is not None and pretrained.vision.checkpoint == inputs["vision_checkpoint_uri"]
    assert (pretrained.vision.kind, pretrained.vision.resolution) == ("cosmos", RESOLUTION)

    rows = [json.loads(line) for line in store.read(join(root, "models", "grpo", "logs", "train.jsonl")).splitlines()]
    assert {"rewards/clip/mean", "rewards/aesthetic/mean"} <= set(rows[-1])
    shown = {path.parent.name: json.loads(path.read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]
             for path in (tmp_path / "kfp").glob("*/*/executor_output.json") if path.parent.name in ("sft", "grpo")}
    assert shown["sft"]["step"] == 2 and "loss" in shown["sft"], "the run page's Metrics of a training step"
    assert shown["grpo"]["step"] == 1 and "reward" in shown["grpo"]

    for stage in ("sft", "grpo"):
        journal = json.loads(store.read(join(root, "journal", f"evaluate-{stage}.json")))
        assert journal["sampling"]["protocol"] == "simplear" and "overall" not in journal
        for index, prompt in enumerate(GENEVAL):
            folder = join(root, "eval", stage, f"{index:05d}")
            assert json.loads(store.read(join(folder, "metadata.jsonl")).splitlines()[0]) == prompt
            samples = [uri for uri in store.list(join(folder, "samples")) if uri.endswith(".png")]
            assert len(samples) == 4
            assert Image.open(store.open(samples[0])).size == (RESOLUTION, RESOLUTION)
    served = json.loads(store.read(join(root, "journal", "serve.json")))["served"]
    assert (served["width"], served["height"]) == (RESOLUTION, RESOLUTION) and "correct" not in served
    assert store.exists(join(report, "report.html"))


def test_missing_models_stop_the_run_before_any_stage(
    s3_store: tuple[Store, str], s3_environment: dict[str, str], tmp_path: Path
) -> None:
    """The first check names each missing model: a CLIP reward without clip_model_uri, a text LM copied without
    its manifest (not by `simplear upload`), an absent Cosmos tokenizer; a reward weight that is not a number."""
    store, bucket = s3_store
    check = existing_checkpoints.python_func
    cosmos, qwen = join(bucket, "cosmos"), join(bucket, "qwen")
    with pytest.raises(ValueError, match="clip_model_uri"):
        check(backend="local", vision_checkpoint=cosmos, text_lm=qwen, rewards="clip:0.7, aesthetic:0.3",
              clip_model="", aesthetic_head="")
    with pytest.raises(ValueError, match="reward 'clip:heavy': the weight after ':' must be a number"):
        check(backend="local", vision_checkpoint=cosmos, text_lm=qwen, rewards="clip:heavy", clip_model="c",
              aesthetic_head="")
    store.write(join(qwen, "config.json"), b"{}")
    with pytest.raises(FileNotFoundError) as missing:
        check(backend="local", vision_checkpoint=cosmos, text_lm=qwen, rewards="geneval_shapes", clip_model="",
              aesthetic_head="")
    message = str(missing.value)
    assert f"Cosmos tokenizer (vision_checkpoint_uri): {cosmos}/encoder.jit" in message
    assert f"text LM (text_lm_uri): {qwen}/manifest.json" in message and "simplear upload" in message
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text("{}")
    upload(tmp_path / "qwen", qwen)
    for name in ("encoder.jit", "decoder.jit"):
        store.write(join(cosmos, name), b"scripted")
    check(backend="local", vision_checkpoint=cosmos, text_lm=qwen, rewards="geneval_shapes", clip_model="",
          aesthetic_head="")
