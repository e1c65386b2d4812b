"""LocalLauncher with real stage runs: ranks as torchrun would start them, logs, the store, failures, cancel."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import chart_platform_config, parser_options

from simplear.cli import COMMANDS
from simplear.platform.launcher import Phase, RunHandle, StageFailed
from simplear.platform.local_launcher import LocalLauncher
from simplear.platform.local_process import local_status, process_alive
from simplear.platform.local_runs import RunDir, list_runs
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stages import STAGES
from simplear.s3_server import EmbeddedS3
from simplear.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[LocalLauncher]:
    """A LocalLauncher on a fresh runs directory; runs still going at the end are cancelled."""
    local = LocalLauncher(tmp_path / "runs", poll_s=0.05, grace_s=5.0)
    yield local
    for run in list_runs(local.runs_dir):
        if not local_status(run).phase.finished:
            local.cancel(RunHandle(run.read_record().stage, run.name, "local"))


def long_shapes(name: str, out: Path) -> StageSpec:
    """A shapes run that would take many minutes: something to cancel."""
    return StageSpec(name=name, args=("--out", str(out), "--n", "1000000"))


def wait_until_running(launcher: LocalLauncher, handle: RunHandle) -> None:
    """Block until the run's ranks have started."""
    deadline = time.monotonic() + 60
    while not (launcher.status(handle).phase == Phase.RUNNING and RunDir(launcher.runs_dir / handle.name).log(
            "rank0").exists()):
        assert time.monotonic() < deadline, "run did not start"
        time.sleep(0.05)


def test_ranks_start_under_torchrun_with_their_pytorchjobs_arguments(launcher: LocalLauncher) -> None:
    """A distributed stage's command is torchrun over its ranks on 127.0.0.1, running the `simplear` arguments of its
    PyTorchJob's container; a stage of one process runs as in its pod, without torchrun."""
    from simplear.platform.manifests.pytorchjob import rank_command

    spec = StageSpec(name="pretrain-1", procs_per_node=2, args=("--preset", "tiny", "--max-steps", "3"))
    command = launcher._record("pretrain", spec).command
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=1", "--nproc-per-node=2", "--master-addr=127.0.0.1", "--tee=3"} <= set(command)
    cluster = rank_command(chart_platform_config("default"), "pretrain", spec)
    assert cluster[0] == "torchrun" and command[command.index("simplear.cli") + 1:] == cluster[
        cluster.index("simplear") + 1:]
    shapes = launcher._record("shapes", StageSpec(name="s", args=("--n", "2"))).command
    assert "torch.distributed.run" not in shapes and shapes[-3:] == ["shapes", "--n", "2"]


@pytest.mark.parametrize("stage", [name for name, kind in STAGES.items() if kind.distributed])
def test_torchrun_passes_every_option_of_a_distributed_stage_through(stage: str) -> None:
    """torchrun's own parser (torch/distributed/run.py, `training_script ...` after `-m`) reads every argument up
    front on Python 3.11, so a stage option that is a prefix of several of torchrun's (`--n`: `--nnodes`,
    `--nproc-per-node`, ...) ends the job with "ambiguous option" before the stage starts, locally and in the pod."""
    from torch.distributed.run import get_args_parser

    subcommand = STAGES[stage].command
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[subcommand[0]][0]).add_arguments(parser)
    options = [option for option in parser_options(parser) if option.startswith("--")]
    parsed = get_args_parser().parse_args(["--nproc-per-node=2", "-m", "simplear.cli", *subcommand, *options])
    assert parsed.training_script == "simplear.cli" and parsed.training_script_args == [*subcommand, *options]


def test_shapes_run_writes_to_the_store_and_copies_its_logs(tmp_path: Path, s3_server: EmbeddedS3,
                                                            s3_store: tuple[Store, str]) -> None:
    """A real stage writes its dataset to S3; its log lands under the log URI once it ends."""
    store, bucket = s3_store
    launcher = LocalLauncher(tmp_path / "runs", log_uri=f"{bucket}/logs", env={**os.environ, **s3_server.env()},
                             poll_s=0.05)
    handle = launcher.run("shapes", StageSpec(name="shapes-1", args=("--out", f"{bucket}/shapes", "--n", "6",
                                                                      "--eval-per-tag", "1")))
    assert launcher.status(handle).phase in (Phase.PENDING, Phase.RUNNING)
    status = launcher.wait(handle, timeout=120)
    assert status.phase == Phase.SUCCEEDED and status.exit_code == 0
    assert status.started is not None and status.finished is not None and status.finished >= status.started
    (summary,) = list(launcher.logs(handle))
    assert json.loads(summary)["meta"] == f"{bucket}/shapes/meta.jsonl"
    assert len(store.read(f"{bucket}/shapes/meta.jsonl").decode().splitlines()) == 6
    assert store.read(f"{bucket}/logs/shapes-1/rank0.log").decode().strip() == summary
    assert store.exists(f"{bucket}/logs/shapes-1/supervisor.log")


def test_ranks_split_the_work_as_under_torchrun(launcher: LocalLauncher, tmp_path: Path) -> None:
    """tokenize with two ranks: each rank sees RANK/WORLD_SIZE, takes its shards; rank 0 writes the manifest."""
    data = tmp_path / "shapes"
    launcher.wait(launcher.run("shapes", StageSpec(name="data", args=("--out", str(data), "--n", "8"))), 120)
    handle = launcher.run("tokenize", StageSpec(name="tok", procs_per_node=2, args=(
        "--meta", str(data / "meta.jsonl"), "--output", str(tmp_path / "tokens"), "--shard-size", "2",
        "--no-progress")))
    assert launcher.wait(handle, timeout=300).phase == Phase.SUCCEEDED
    run = RunDir(launcher.runs_dir / "tok")
    assert "rank 1/2 done: 2 shards tokenized" in run.log("rank1").read_text()
    assert "rank 0/2 done: 2 shards tokenized" in run.log("rank0").read_text()
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"ranks/rank-00000.json", "ranks/rank-00001.json"}
    assert (manifest["tokens"]["num_shards"], manifest["tokens"]["num_records"]) == (4, 8)


def test_a_failing_stage_raises_with_its_last_log_lines(launcher: LocalLauncher, tmp_path: Path) -> None:
    """StageFailed names stage, run, phase and replica and carries the tail of the failing rank's log."""
    handle = launcher.run("tokenize", StageSpec(name="broken", args=(
        "--meta", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "tokens"))))
    with pytest.raises(StageFailed) as failure:
        launcher.wait(handle, timeout=120)
    error = failure.value
    assert error.status.phase == Phase.FAILED and error.status.failed_replica == "rank0"
    assert error.status.exit_code == 1 and error.status.message == "rank 0 exited with 1"
    assert any("simplear tokenize: error" in line and "missing.jsonl" in line for line in error.tail)
    assert str(error).startswith("stage tokenize run broken Failed (replica rank0, exit code 1): rank 0 exited with 1")


def test_cancel_stops_the_whole_process_group(launcher: LocalLauncher, tmp_path: Path) -> None:
    """A long run is cancelled: supervisor and ranks are gone, the run is recorded Cancelled, wait raises."""
    handle = launcher.run("shapes", long_shapes("long", tmp_path / "out"))
    wait_until_running(launcher, handle)
    group = RunDir(launcher.runs_dir / "long").read_record().pid
    launcher.cancel(handle)
    assert launcher.status(handle).phase == Phase.CANCELLED
    assert not process_alive(group)
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    with pytest.raises(StageFailed, match="stage shapes run long Cancelled"):
        launcher.wait(handle, timeout=5)
    launcher.cancel(handle)  # a second cancel changes nothing
    assert launcher.status(handle).phase == Phase.CANCELLED


def test_cancel_stops_torchrun_and_every_rank(launcher: LocalLauncher, tmp_path: Path) -> None:
    """torchrun starts each rank in a session of its own; cancelling a two-rank tokenize still stops torchrun and both
    ranks, and records the run Cancelled."""
    data = tmp_path / "shapes"
    launcher.wait(launcher.run("shapes", StageSpec(name="data", args=("--out", str(data), "--n", "2"))), 120)
    first = (data / "meta.jsonl").read_text().splitlines()[0]
    (data / "many.jsonl").write_text((first + "\n") * 100_000)
    handle = launcher.run("tokenize", StageSpec(name="long-tok", procs_per_node=2, args=(
        "--meta", str(data / "many.jsonl"), "--output", str(tmp_path / "tokens"), "--no-progress")))
    run = RunDir(launcher.runs_dir / "long-tok")
    deadline = time.monotonic() + 120
    while len(run.rank_groups()) < 2:
        assert time.monotonic() < deadline and not launcher.status(handle).phase.finished, "ranks did not start"
        time.sleep(0.1)
    ranks = run.rank_groups()
    launcher.cancel(handle)
    assert launcher.status(handle).phase == Phase.CANCELLED
    deadline = time.monotonic() + 10
    while any(process_alive(rank) for rank in ranks):
        assert time.monotonic() < deadline, f"ranks {ranks} outlived the cancel"
        time.sleep(0.1)


def test_wait_times_out_on_a_run_still_going(launcher: LocalLauncher, tmp_path: Path) -> None:
    """wait() gives up with TimeoutError naming the run; the run keeps going until cancelled."""
    handle = launcher.run("shapes", long_shapes("slow", tmp_path / "out"))
    with pytest.raises(TimeoutError, match="stage shapes run slow still (Pending|Running) after 0.3 s"):
        launcher.wait(handle, timeout=0.3)
    assert launcher.status(handle).phase == Phase.RUNNING


def test_runs_outlive_the_launcher_that_started_them(tmp_path: Path) -> None:
    """Another LocalLauncher on the same runs directory follows, waits for and lists the run."""
    first = LocalLauncher(tmp_path / "runs", poll_s=0.05)
    handle = first.run("shapes", StageSpec(name="kept", args=("--out", str(tmp_path / "s"), "--n", "2")))
    del first
    second = LocalLauncher(tmp_path / "runs", poll_s=0.05)
    assert second.wait(handle, timeout=120).phase == Phase.SUCCEEDED
    assert [run.name for run in list_runs(tmp_path / "runs")] == ["kept"]
    assert RunDir(tmp_path / "runs" / "kept").read_record().spec.args[-1] == "2"


def test_follow_streams_the_log_until_the_run_ends(launcher: LocalLauncher, tmp_path: Path) -> None:
    """logs(follow=True) returns once the run has ended, with every line rank 0 wrote."""
    handle = launcher.run("shapes", StageSpec(name="followed", args=("--out", str(tmp_path / "s"), "--n", "3")))
    lines = list(launcher.logs(handle, follow=True))
    assert launcher.status(handle).phase == Phase.SUCCEEDED
    assert len(lines) == 1 and json.loads(lines[0])["meta"].endswith("meta.jsonl")


def test_a_rollout_server_that_does_not_start_fails_the_run_before_any_rank(launcher: LocalLauncher,
                                                                           tmp_path: Path) -> None:
    """GRPO starts its rollout server first; when it dies the run fails on replica rollout with its log tail."""
    spec = StageSpec(name="grpo-local", args=("--prompts", "p.jsonl", "--output", str(tmp_path / "g"),
                                              "--init-from", str(tmp_path / "none"), "--max-steps", "1"),
                     rollout=RolloutSpec(model=str(tmp_path / "no-such-model"), engine="torch"))
    handle = launcher.run("grpo", spec)
    record = RunDir(launcher.runs_dir / "grpo-local").read_record()
    assert record.command[-10:] == ["--rollout", "http", "--rollout-url", record.rollout_url, "--rollout-weight-sync",
                                    "auto", "--rollout-sync-host", "127.0.0.1", "--rollout-sync-port", "51216"]
    with pytest.raises(StageFailed) as failure:
        launcher.wait(handle, timeout=180)
    assert failure.value.status.failed_replica == "rollout"
    assert failure.value.status.message == "rollout server exited while starting"
    assert failure.value.tail
    assert not RunDir(launcher.runs_dir / "grpo-local").log("rank0").exists()


def test_bad_requests_are_refused_before_anything_starts(launcher: LocalLauncher, tmp_path: Path) -> None:
    """Two nodes, an unknown stage, a name already used: clear errors, no process started."""
    with pytest.raises(ValueError, match="a local run uses this one machine"):
        launcher.run("pretrain", StageSpec(name="p", nodes=2))
    with pytest.raises(ValueError, match="unknown stage 'finetune'"):
        launcher.run("finetune", StageSpec(name="p"))
    launcher.wait(launcher.run("shapes", StageSpec(name="twice", args=("--out", str(tmp_path / "a"), "--n", "1"))),
                  120)
    with pytest.raises(ValueError, match="a run named twice already exists"):
        launcher.run("shapes", StageSpec(name="twice", args=("--out", str(tmp_path / "b"), "--n", "1")))
    with pytest.raises(ValueError, match="is a kubernetes run, not a local one"):
        launcher.status(RunHandle("shapes", "twice", "kubernetes", "ml"))


def test_deploy_serves_the_checkpoint_on_127_0_0_1_until_the_with_block_ends(launcher: LocalLauncher,
                                                                             tmp_path: Path) -> None:
    """LocalLauncher.deploy starts `simplear serve` on the checkpoint, returns once KServe reports the model ready
    under the given name, answers a v1 predict there, and stops the server when the deployment's `with` ends."""
    import base64
    import io
    import urllib.error
    import urllib.request

    from PIL import Image

    from simplear.config import get_preset
    from simplear.model.simplear_lm import SimpleARModel

    SimpleARModel.random_init(get_preset("tiny"), seed=1).save(tmp_path / "model")
    with launcher.deploy("shapes", str(tmp_path / "model"), timeout=300) as deployment:
        assert deployment.url.startswith("http://127.0.0.1:") and deployment.name == "shapes"
        body = json.dumps({"instances": [{"prompt": "a red square", "seed": 3}]}).encode()
        request = urllib.request.Request(f"{deployment.url}/v1/models/shapes:predict", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=120) as answer:
            (prediction,) = json.loads(answer.read())["predictions"]
        image = Image.open(io.BytesIO(base64.b64decode(prediction["image_b64"])))
        assert image.size == (prediction["resolution"], prediction["resolution"])
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{deployment.url}/v2/models/shapes/ready", timeout=5)


def test_deploy_of_a_missing_checkpoint_fails_with_the_servers_words(launcher: LocalLauncher, tmp_path: Path) -> None:
    """A checkpoint that is not there: the server exits and deploy raises with its log's tail."""
    with pytest.raises(RuntimeError, match=r"simplear serve exited with \d+:(.|\n)*" + str(tmp_path / "absent")):
        launcher.deploy("", str(tmp_path / "absent"), timeout=120)
