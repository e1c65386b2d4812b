"""`simplear jobs`: local runs (real stage runs under a runs directory) and the cluster's objects as tables."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import JsonResponse, answered_job, condition, live_isvc, pod, pod_list, terminated

from simplear.platform import jobs_command
from simplear.platform.jobs_cluster import (
    cluster_listing,
    describe_isvc,
    describe_pod,
    describe_pytorchjob,
    describe_run,
    parse_ref,
)
from simplear.platform.jobs_tables import age, table
from simplear.platform.launcher import Phase, RunHandle, StageFailed
from simplear.platform.local_launcher import LocalLauncher
from simplear.platform.local_process import local_status, process_alive
from simplear.platform.local_runs import RunDir
from simplear.platform.stage_spec import StageSpec

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def jobs(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """Run `simplear jobs ARGV`; (exit status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="simplear jobs")
    jobs_command.add_arguments(parser)
    status = jobs_command.run(parser.parse_args(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory holding a succeeded shapes run and a failed tokenize run, both real."""
    root = tmp_path_factory.mktemp("jobs")
    launcher = LocalLauncher(root / "runs", poll_s=0.05)
    launcher.wait(launcher.run("shapes", StageSpec(name="shapes-ok", args=("--out", str(root / "s"), "--n", "2"))),
                  120)
    with pytest.raises(StageFailed):
        launcher.wait(launcher.run("tokenize", StageSpec(name="tok-bad", args=(
            "--meta", str(root / "missing.jsonl"), "--output", str(root / "t")))), 120)
    return root / "runs"


@pytest.mark.slow
def test_list_shows_every_local_run(runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """One row per run, oldest first, with stage, status (and failing replica), ranks, age and duration."""
    status, out, _ = jobs(capsys, "list", "--runs-dir", str(runs_dir))
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "STAGE", "STATUS", "RANKS", "AGE", "DURATION"]
    assert [row.split()[:4] for row in rows] == [["shapes-ok", "shapes", "Succeeded", "1"],
                                                 ["tok-bad", "tokenize", "Failed", "(rank0)"]]


@pytest.mark.slow
def test_describe_a_failed_run_shows_why(runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """Status, message, replica, exit code, command and the failing rank's last lines."""
    status, out, _ = jobs(capsys, "--runs-dir", str(runs_dir), "describe", "tok-bad")
    assert status == 0
    assert "Status:" in out and "Failed" in out
    assert "Failed replica: rank0" in out and "Exit code:      1" in out
    assert "-m simplear.cli tokenize --meta" in out
    tail = out.split("Last lines of rank0:\n")[1]
    assert "simplear tokenize: error" in tail and "missing.jsonl" in tail


@pytest.mark.slow
def test_describe_shows_where_a_run_stands(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real tokenize run with its progress bar on: describe reads the bar's step of total from its log."""
    launcher = LocalLauncher(tmp_path / "runs", poll_s=0.05)
    meta = runs_dir.parent / "s" / "meta.jsonl"
    launcher.wait(launcher.run("tokenize", StageSpec(name="tok-ok", args=(
        "--meta", str(meta), "--output", str(tmp_path / "tokens"), "--preset", "tiny"))), 120)
    status, out, _ = jobs(capsys, "--runs-dir", str(tmp_path / "runs"), "describe", "tok-ok")
    assert status == 0 and "Progress:       2/2 (100%)" in out


@pytest.mark.slow
def test_logs_prints_a_replicas_log(runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """rank 0 by default, another replica on request, follow on a finished run prints all and returns."""
    status, out, _ = jobs(capsys, "logs", "shapes-ok", "--runs-dir", str(runs_dir))
    assert status == 0 and '"meta":' in out
    assert jobs(capsys, "logs", "shapes-ok", "-f", "--runs-dir", str(runs_dir))[1] == out
    status, out, _ = jobs(capsys, "logs", "tok-bad", "--replica", "supervisor", "--runs-dir", str(runs_dir))
    assert status == 0
    status, _, err = jobs(capsys, "logs", "tok-bad", "--replica", "rank7", "--runs-dir", str(runs_dir))
    assert status == 1 and err.strip() == (
        "simplear jobs logs: run tok-bad has no rank7 log; logs: rank0, supervisor, torchrun")


@pytest.mark.slow
def test_cancel_stops_a_run_started_by_another_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`jobs cancel` finds the run on disk, stops its process group and records it; a finished run is left."""
    launcher = LocalLauncher(tmp_path / "runs", poll_s=0.05)
    handle = launcher.run("shapes", StageSpec(name="long", args=("--out", str(tmp_path / "s"), "--n", "1000000")))
    run = RunDir(tmp_path / "runs" / "long")
    deadline = time.monotonic() + 60
    while not run.log("rank0").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, out, _ = jobs(capsys, "cancel", "long", "--runs-dir", str(tmp_path / "runs"))
    assert (status, out.strip()) == (0, "run long cancelled")
    assert launcher.status(handle).phase == Phase.CANCELLED
    assert not process_alive(run.read_record().pid)
    assert jobs(capsys, "cancel", "long", "--runs-dir", str(tmp_path / "runs"))[1].strip() == \
        "run long already finished: Cancelled"


def test_unknown_runs_and_empty_directories(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing run is one line on stderr and status 1; the runs directory defaults to $SIMPLEAR_RUNS_DIR."""
    monkeypatch.setenv("SIMPLEAR_RUNS_DIR", str(tmp_path / "env-runs"))
    assert jobs(capsys, "list") == (0, f"No runs in {tmp_path / 'env-runs'}.\n", "")
    status, _, err = jobs(capsys, "describe", "nope")
    assert status == 1 and err == f"simplear jobs describe: no run named nope in {tmp_path / 'env-runs'}\n"


def test_target_options_work_before_or_after_the_action() -> None:
    """`jobs --cluster -n ml list` and `jobs list --cluster -n ml` mean the same."""
    parser = argparse.ArgumentParser()
    jobs_command.add_arguments(parser)
    before = parser.parse_args(["--cluster", "-n", "ml", "logs", "pytorchjob/x", "-f"])
    after = parser.parse_args(["logs", "pytorchjob/x", "-f", "--cluster", "-n", "ml"])
    assert vars(before) == vars(after)
    assert (after.cluster, after.namespace, after.name, after.follow) == (True, "ml", "pytorchjob/x", True)
    assert parser.parse_args(["list"]).cluster is False


def test_cluster_commands_report_an_unreachable_cluster_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig, or an API server that refuses connections: status 1 and one line saying so."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    status, _, err = jobs(capsys, "--cluster", "--kubeconfig", str(tmp_path / "none"), "list")
    assert status == 1 and err.startswith("simplear jobs list: no cluster to talk to") and err.count("\n") == 1
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": "http://127.0.0.1:1"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "me", "namespace": "ml"}}],
        "users": [{"name": "me", "user": {"token": "t"}}]}))
    status, _, err = jobs(capsys, "--cluster", "--kubeconfig", str(config), "describe", "pytorchjob/pretrain-1")
    assert status == 1 and err.startswith("simplear jobs describe: Failed to get PyTorchJob: ml/pretrain-1")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("ref", "parsed"), [
    ("pretrain-1", ("pytorchjob", "pretrain-1")), ("pytorchjob/p", ("pytorchjob", "p")), ("po/x", ("pod", "x")),
    ("isvc/simplear", ("inferenceservice", "simplear")), ("run/0b1c", ("run", "0b1c")),
])
def test_references_are_kubectl_style(ref: str, parsed: tuple[str, str]) -> None:
    """KIND/NAME with kubectl's short names; a bare name is a PyTorchJob."""
    assert parse_ref(ref) == parsed


def test_bad_references_are_refused() -> None:
    """An unknown kind or an empty name says what is expected."""
    with pytest.raises(ValueError, match="unknown kind 'deployment'"):
        parse_ref("deployment/x")
    with pytest.raises(ValueError, match="names nothing"):
        parse_ref("pod/")


def rollout_pod() -> dict[str, Any]:
    """A ready rollout-server pod as listed."""
    ready = pod("grpo-1-rollout-7d9f-abcde", "rollout", {"running": {"startedAt": "2026-03-01T11:00:00Z"}})
    ready["status"]["containerStatuses"][0].update(name="rollout", ready=True, restartCount=0)
    ready["spec"]["containers"][0]["name"] = "rollout"
    return ready


def pipeline_runs() -> list[Any]:
    """Runs as kfp.Client.list_runs returns them, parsed by the KFP API client."""
    import kfp_server_api

    response = kfp_server_api.ApiClient().deserialize(JsonResponse({"runs": [
        {"run_id": "5e1f", "display_name": "simplear-demo", "state": "RUNNING", "created_at": "2026-03-01T11:30:00Z"},
        {"run_id": "77aa", "display_name": "simplear-0.5b", "state": "FAILED", "created_at": "2026-02-27T09:00:00Z",
         "finished_at": "2026-02-27T12:00:00Z", "error": {"code": 2, "message": "pretrain step failed"}},
    ], "total_size": 2}), "V2beta1ListRunsResponse")
    return response.runs


def test_cluster_listing_has_the_four_kinds() -> None:
    """PyTorchJobs, rollout pods, InferenceServices and pipeline runs, each a kubectl-style table."""
    failed = answered_job([condition("Created"), condition("Failed", message="Worker 0 failed")])
    text = cluster_listing([failed], pod_list(rollout_pod()), [live_isvc()], pipeline_runs(), NOW)
    sections = {part.splitlines()[0]: part.splitlines()[1:] for part in text.split("\n\n")}
    assert list(sections) == ["PYTORCHJOBS", "ROLLOUT PODS", "INFERENCESERVICES", "PIPELINE RUNS"]
    assert sections["PYTORCHJOBS"][0].split() == ["NAME", "STAGE", "STATUS", "NODES", "AGE"]
    assert sections["PYTORCHJOBS"][1].split() == ["pretrain-1", "pretrain", "Failed", "2", "2h"]
    assert sections["ROLLOUT PODS"][1].split() == ["grpo-1-rollout-7d9f-abcde", "1/1", "Running", "0", "2h"]
    assert sections["INFERENCESERVICES"][1].split() == [
        "simplear", "True", "s3://simplear-checkpoints/models/simplear/v3",
        "http://simplear.ml-platform.example.com", "<unknown>"]
    assert [row.split() for row in sections["PIPELINE RUNS"][1:]] == [
        ["5e1f", "simplear-demo", "RUNNING", "30m"], ["77aa", "simplear-0.5b", "FAILED", "2d"]]


def test_cluster_listing_says_what_is_not_installed() -> None:
    """A cluster without Pipelines (or KServe) still lists the rest, with the reason in place of the table."""
    text = cluster_listing([], [], "RuntimeError: the server could not find the requested resource",
                           "MaxRetryError: connection refused", NOW)
    assert "PYTORCHJOBS\n  (none)" in text and "ROLLOUT PODS\n  (none)" in text
    assert "INFERENCESERVICES\n  unavailable: RuntimeError: the server could not" in text
    assert "PIPELINE RUNS\n  unavailable: MaxRetryError: connection refused" in text


def test_describe_a_failed_pytorchjob_names_the_pod_that_failed_first() -> None:
    """Conditions, replicas, pods and the first failure."""
    job = answered_job([condition("Created"), condition("Running", "False"),
                        condition("Failed", message="PyTorchJob pretrain-1 is failed because 1 Worker replica(s) "
                                                    "failed.")])
    pods = pod_list(pod("pretrain-1-master-0", "master", terminated(1, "2026-03-01T10:05:09Z")),
                    pod("pretrain-1-worker-0", "worker", terminated(137, "2026-03-01T10:05:00Z", "OOMKilled")))
    text = describe_pytorchjob(job, pods, NOW)
    assert "Status:         Failed" in text and "Replicas:       Master 1, Worker 1" in text
    assert "Procs per node: 8" in text
    assert "Failed    True     PyTorchJobFailed" in text
    assert "pretrain-1-worker-0   0/1     OOMKilled   1" in text
    assert text.endswith("Failed first: pretrain-1-worker-0 exit code 137 OOMKilled")


def test_describe_isvc_pod_and_pipeline_run() -> None:
    """The InferenceService's readiness and storage, a pod's containers, a run's error."""
    isvc_text = describe_isvc(live_isvc())
    assert "Ready:      True" in isvc_text
    assert "Storage:    s3://simplear-checkpoints/models/simplear/v3" in isvc_text
    assert "Generation: 4" in isvc_text
    (crashing,) = pod_list(pod("p-0", "master", {"waiting": {"reason": "CrashLoopBackOff"}}))
    assert "Container pytorch: waiting (CrashLoopBackOff), ready False, restarts 1" in describe_pod(crashing, NOW)
    run_text = describe_run(pipeline_runs()[1])
    assert "State:    FAILED" in run_text and "Error:    pretrain step failed" in run_text


def test_ages_and_tables_look_like_kubectls() -> None:
    """42s, 17m, 5h, 3d; columns aligned three spaces apart, no trailing blanks."""
    assert [age(NOW - delta, NOW) for delta in (timedelta(seconds=42), timedelta(minutes=17), timedelta(hours=5),
                                                timedelta(days=3))] == ["42s", "17m", "5h", "3d"]
    assert age(None, NOW) == "<unknown>"
    assert table(["name", "status"], [["a", "Running"], ["longer-name", "Failed"]]).splitlines() == [
        "NAME          STATUS", "a             Running", "longer-name   Failed"]


def test_local_status_reads_runs_written_by_any_launcher(runs_dir: Path) -> None:
    """The record and result on disk are enough: no launcher object needed."""
    assert local_status(RunDir(runs_dir / "shapes-ok")).phase == Phase.SUCCEEDED
    failed = local_status(RunDir(runs_dir / "tok-bad"))
    assert (failed.phase, failed.failed_replica, failed.exit_code) == (Phase.FAILED, "rank0", 1)
    assert RunHandle("tokenize", "tok-bad", "local").backend == "local"
