"""GRPO through the sidecar layout's localhost path, for real on CPU, and the weight-push refusals that keep a rollout
server serving the weights it has.

The rollout server runs with the arguments of the sidecar container of the PyTorchJob the platform builds (vLLM
engine, in the rollout role's closure .venv-vllm), and `simplear train` with the trainer container's own rollout flags
(localhost URL, weight sync auto, rendezvous on 127.0.0.1). On CPU, auto resolves to the store reload on both ends;
the NCCL routes refuse with the reason, and a push whose tensors do not match the served policy is refused before
anything is loaded, over NCCL (prepare) and through the store alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import torch
from safetensors.torch import load_file, save_file

from simplear.config import PRESETS
from simplear.data.shapes import make_dataset, write_dataset
from simplear.model.simplear_lm import SimpleARModel
from simplear.platform.default_platform import default_platform_config
from simplear.platform.manifests import pytorch_job
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.store import Store
from simplear.train.rollout.client import HttpRolloutClient
from simplear.train.rollout.server import RolloutServerProcess
from simplear.train.rollout.weight_sync import (
    NcclWeightPush,
    WeightLayoutMismatch,
    checkpoint_layout,
    layout_problems,
    module_layout,
    nccl_unavailable,
)

pytestmark = pytest.mark.slow
TIMEOUT = 300
TINY32 = PRESETS["tiny"].model_copy(update={"vision": PRESETS["tiny"].vision.model_copy(update={"resolution": 32})})
"""The tiny preset (vLLM's CPU attention needs its 32-wide heads) with 32 px images: 64 codes per image."""
GENERATE = {"prompts": ["a red circle", "a blue square"], "n": 2, "num_codes": 16, "cfg_scale": 3.0, "seed": 5}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The initial policy, a trained one, and two broken pushes: a tensor of the wrong shape, one of an int dtype."""
    root = tmp_path_factory.mktemp("sidecar")
    for name, seed in (("initial", 0), ("trained", 1), ("wrong_shape", 2), ("wrong_dtype", 3)):
        SimpleARModel.random_init(TINY32, seed=seed).save(root / name)
    for name, change in (("wrong_shape", lambda t: t[:-1]), ("wrong_dtype", lambda t: t.to(torch.int32))):
        path = root / name / "model.safetensors"
        tensors = load_file(str(path))
        key = "model.layers.0.self_attn.q_proj.weight"
        tensors[key] = change(tensors[key]).contiguous()
        save_file(tensors, str(path), metadata={"format": "pt"})
    return {name: root / name for name in ("initial", "trained", "wrong_shape", "wrong_dtype")}


def sidecar_job(model: Path, args: tuple[str, ...] = ()) -> dict:
    """The GRPO PyTorchJob of the chart's default platform, rollout server as the master's sidecar (the default)."""
    return pytorch_job(default_platform_config(), "grpo",
                       StageSpec(name="grpo-cpu", args=args, rollout=RolloutSpec(model=str(model))))


def sidecar_server_args(job: dict) -> list[str]:
    """The sidecar container's rollout-server arguments, less the address (the test server takes a free port of
    127.0.0.1, which must be what the sidecar binds), on the CPU."""
    (sidecar,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["initContainers"]
    assert sidecar["command"] == ["simplear", "rollout-server"] and sidecar["restartPolicy"] == "Always"
    args, kept = sidecar["args"], []
    hosts = [args[i + 1] for i, arg in enumerate(args) if arg == "--host"]
    assert hosts == ["127.0.0.1"], "a one-node sidecar listens on the loopback only"
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--host", "--port"):
            skip = True
        else:
            kept.append(arg)
    return [*kept, "--device", "cpu"]


@pytest.fixture(scope="module")
def server(checkpoints: dict[str, Path], vllm_python: Path) -> Iterator[RolloutServerProcess]:
    """The rollout server as the sidecar runs it, in the rollout role's closure."""
    args = sidecar_server_args(sidecar_job(checkpoints["initial"]))
    assert args[:2] == ["--engine", "vllm"] and args[args.index("--weight-transfer") + 1] == "auto"
    with RolloutServerProcess(args, python=vllm_python, startup_timeout_s=TIMEOUT) as process:
        yield process


def generate(url: str) -> dict:
    """A seeded /generate answer."""
    answer = requests.post(f"{url}/generate", json=GENERATE, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_grpo_runs_through_the_sidecar_localhost_path_with_the_vllm_engine(
    server: RolloutServerProcess, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """`simplear train` with the trainer container's own command (its rollout URL moved to the test's port) trains
    two steps against the vLLM sidecar: one store push per step (auto on CPU), rollouts from each pushed version."""
    meta = write_dataset(make_dataset(8, seed=3), tmp_path / "shapes")
    out = tmp_path / "grpo"
    run_args = ("--prompts", str(meta), "--caption", "short", "--output", str(out), "--init-from",
                str(checkpoints["initial"]), "--max-steps", "2", "--batch-size", "4", "--num-generations", "2",
                "--policy", "guided", "--cfg-scale", "3", "--reward", "geneval_shapes", "--save-steps", "100",
                "--no-tensorboard", "--scratch", str(tmp_path / "scratch"))
    (trainer,) = sidecar_job(checkpoints["initial"], run_args)["spec"]["pytorchReplicaSpecs"]["Master"][
        "template"]["spec"]["containers"]
    command = trainer["command"][trainer["command"].index("--no-python") + 2:]  # after `simplear`
    assert command[command.index("--rollout-url") + 1] == "http://127.0.0.1:8000"
    assert command[command.index("--rollout-sync-host") + 1] == "127.0.0.1"
    command[command.index("--rollout-url") + 1] = server.url
    assert requests.get(f"{server.url}/health", timeout=TIMEOUT).json()["weight_sync"] == ["store"]
    start = requests.get(f"{server.url}/health", timeout=TIMEOUT).json()["policy_version"]
    job = subprocess.run([sys.executable, "-m", "simplear.cli", *command], capture_output=True, text=True,
                         timeout=900, check=False)
    assert job.returncode == 0, (job.stdout + job.stderr)[-6000:]
    assert "through the store: the trainer has no CUDA device" in job.stderr
    rows = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert [row["policy_version"] for row in rows] == [start + 1, start + 2], "one push per step"
    assert all(0.0 <= row["reward"] <= 1.0 for row in rows)
    assert SimpleARModel.load(out / "final").vocab.codebook_size == 16


def test_a_push_of_the_wrong_shape_or_dtype_is_refused_and_the_old_weights_keep_serving(
    server: RolloutServerProcess, checkpoints: dict[str, Path]
) -> None:
    """Over NCCL (the prepare step) and through the store: 400 naming the tensor and what differs, nothing loaded,
    the same answers at the same policy version; a matching push is then taken."""
    url = server.url
    requests.post(f"{url}/weights", json={"uri": str(checkpoints["initial"])}, timeout=TIMEOUT).raise_for_status()
    before, version = generate(url), requests.get(f"{url}/health", timeout=TIMEOUT).json()["policy_version"]
    layout = requests.get(f"{url}/weights/layout", timeout=TIMEOUT).json()["parameters"]
    assert layout.keys() == checkpoint_layout(checkpoints["initial"]).keys()
    assert {entry["dtype"] for entry in layout.values()} == {"float32"}  # the engine's dtype on CPU
    names = list(layout)
    q = "model.layers.0.self_attn.q_proj.weight"

    def prepare(dtypes: dict[str, str], shapes: dict[str, list[int]], drop: str | None = None) -> requests.Response:
        kept = [n for n in names if n != drop]
        return requests.post(f"{url}/weights/nccl/prepare", timeout=TIMEOUT, json={"update_info": {
            "names": kept, "dtype_names": [dtypes.get(n, layout[n]["dtype"]) for n in kept],
            "shapes": [shapes.get(n, layout[n]["shape"]) for n in kept]}})

    wrong_shape = prepare({}, {q: [layout[q]["shape"][0] - 1, layout[q]["shape"][1]]})
    assert wrong_shape.status_code == 400
    assert f"{q} has shape [{layout[q]['shape'][0] - 1}, " in wrong_shape.json()["error"]
    assert "keeps the weights it has" in wrong_shape.json()["error"]
    wrong_dtype = prepare({q: "bfloat16"}, {})
    assert wrong_dtype.status_code == 400 and f"{q} is bfloat16, the served policy takes float32" in (
        wrong_dtype.json()["error"])
    assert f"missing {q}" in prepare({}, {}, drop=q).json()["error"]
    matching = prepare({}, {})
    assert matching.status_code == 400 and "no NCCL weight push here" in matching.json()["error"]
    init = requests.post(f"{url}/weights/nccl/init", timeout=TIMEOUT, json={"init_info": {
        "master_address": "127.0.0.1", "master_port": 51216, "rank_offset": 1, "world_size": 2}})
    assert init.status_code == 400 and "--weight-transfer store" in init.json()["error"]
    for name, expected in (("wrong_shape", f"{q} has shape"), ("wrong_dtype", f"{q} is int32")):
        refused = requests.post(f"{url}/weights", json={"uri": str(checkpoints[name])}, timeout=TIMEOUT)
        assert refused.status_code == 400 and expected in refused.json()["error"], refused.text
    assert requests.get(f"{url}/health", timeout=TIMEOUT).json()["policy_version"] == version
    assert generate(url)["codes"] == before["codes"]
    taken = requests.post(f"{url}/weights", json={"uri": str(checkpoints["trained"])}, timeout=TIMEOUT)
    assert taken.status_code == 200 and taken.json()["policy_version"] == version + 1
    assert generate(url)["codes"] != before["codes"]


def test_the_trainer_refuses_a_mismatched_policy_and_falls_back_to_the_store(
    server: RolloutServerProcess, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """HttpRolloutClient with the NCCL push: a policy of another shape is refused before anything is sent (the
    trainer's error, not a reason to fall back); a matching one that cannot go over NCCL here goes through the store
    for the rest of the run."""
    client = HttpRolloutClient(server.url, Store(), str(tmp_path / "pushed"))
    client.nccl = NcclWeightPush(server.url, "127.0.0.1", 51216)
    version = client.health()["policy_version"]
    other = TINY32.model_copy(update={"shape": TINY32.shape.model_copy(update={"intermediate_size": 256})})
    with pytest.raises(WeightLayoutMismatch, match="mlp.gate_proj.weight has shape"):
        client.push_weights(SimpleARModel.random_init(other, seed=0))
    assert client.nccl is not None and client.health()["policy_version"] == version
    assert client.push_weights(SimpleARModel.load(checkpoints["trained"])) == version + 1
    assert client.nccl is None, "NCCL could not be had here, so the client pushes through the store from now on"
    assert nccl_unavailable(client.health()) == "the trainer has no CUDA device"


def test_layouts_come_from_checkpoint_headers_and_name_every_difference(checkpoints: dict[str, Path]) -> None:
    """A checkpoint's layout is its safetensors header; a model's counts a tied head once, as its checkpoint does;
    the differences name missing, unknown, reshaped and retyped tensors (exact dtype for the wire, any float for a
    checkpoint)."""
    stored = checkpoint_layout(checkpoints["initial"])
    model = SimpleARModel.load(checkpoints["initial"])
    assert module_layout(model.lm) == stored and "lm_head.weight" not in stored
    pushed = {**stored, "extra.weight": ("float32", (2,))}
    q = "model.layers.0.self_attn.q_proj.weight"
    pushed[q] = ("bfloat16", (1, 1))
    del pushed["model.norm.weight"]
    assert layout_problems(stored, pushed, exact_dtype=True) == [
        "missing model.norm.weight", "unknown tensor extra.weight",
        f"{q} has shape [1, 1], the served policy {list(stored[q][1])}",
        f"{q} is bfloat16, the served policy takes float32"]
    assert layout_problems(stored, {**stored, q: ("bfloat16", stored[q][1])}, exact_dtype=False) == []
