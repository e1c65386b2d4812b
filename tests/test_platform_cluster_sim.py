"""The Kubernetes launcher and a pipeline step against a simulated API server (tests/kube_api_sim.py says which
upstream behaviour each part simulates): pods that take their time, 400s while a container starts, cut streams,
failures, GRPO's rollout server in both placements, the InferenceService deploy flow, and a step process that
receives SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kube_api_sim import FakeCluster, PodScript
from test_platform_support import chart_platform_config

from simplear.platform.cluster_clients import connect
from simplear.platform.jobs_cluster import describe_cluster
from simplear.platform.kubernetes_launcher import KubernetesLauncher
from simplear.platform.launcher import Phase, StageFailed
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stage_step import run_stage_step

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.1


def launcher_for(server: object, tmp_path: Path, notes: list[str] | None = None) -> KubernetesLauncher:
    """A KubernetesLauncher on the simulated cluster, polling fast."""
    clients = connect(kubeconfig=str(server.kubeconfig(tmp_path / "kubeconfig")))
    return KubernetesLauncher(chart_platform_config("default"), clients, poll_s=POLL_S,
                              note=notes.append if notes is not None else None)


def test_follow_waits_for_the_container_then_streams_every_line(tmp_path: Path) -> None:
    """No pod yet, then unschedulable, then ContainerCreating (the kubelet answers 400): the follower waits, says why,
    and streams every line of the running container once; the job then succeeds."""
    cluster = FakeCluster()
    with cluster.serve() as server:
        notes: list[str] = []
        launcher = launcher_for(server, tmp_path, notes)
        handle = launcher.run("pretrain", StageSpec(name="pretrain-1"))
        lines = list(launcher.logs(handle, follow=True))
        assert lines == list(PodScript().lines)
        assert launcher.wait(handle, 30).phase == Phase.SUCCEEDED
    said = "\n".join(notes)
    assert "no master pod yet" in said
    assert "Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu." in said
    assert "ContainerCreating" in said
    assert cluster.kinds("pytorchjobs") == ["pretrain-1"] and not cluster.deleted("pytorchjobs")


def test_a_reset_log_stream_is_reopened_without_losing_or_repeating_lines(tmp_path: Path) -> None:
    """The first stream is cut by a connection reset after two lines: the follower reopens it (sinceSeconds) and
    skips what it already printed by timestamp."""
    lines = tuple(f"step {i} loss {1 / i:.3f}" for i in range(1, 9))
    cluster = FakeCluster(scripts={"sft": PodScript(lines=lines, reset_stream_after=2)})
    with cluster.serve() as server:
        notes: list[str] = []
        launcher = launcher_for(server, tmp_path, notes)
        handle = launcher.run("sft", StageSpec(name="sft-1"))
        assert list(launcher.logs(handle, follow=True)) == list(lines)
        assert launcher.wait(handle, 30).phase == Phase.SUCCEEDED
    assert "sft-1" in cluster.resets_done
    assert any("interrupted" in note and "reopening" in note for note in notes)
    log_requests = [call for call in cluster.calls if call.resource == "pods/log"]
    assert len(log_requests) >= 2


def test_a_failed_stage_names_the_pod_its_exit_code_and_its_last_lines(tmp_path: Path) -> None:
    """The master is OOM-killed: StageFailed names the pod, exit code 137, the reason and the log's last lines."""
    script = PodScript(lines=("step 1 loss 2.0", "torch.OutOfMemoryError: CUDA out of memory"), exit_code=137,
                       reason="OOMKilled")
    cluster = FakeCluster(scripts={"pretrain": script})
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        handle = launcher.run("pretrain", StageSpec(name="pretrain-2"))
        list(launcher.logs(handle, follow=True))
        with pytest.raises(StageFailed) as failed:
            launcher.wait(handle, 30)
    text = str(failed.value)
    assert "(replica pretrain-2-master-0, exit code 137, OOMKilled)" in text
    assert text.endswith("| torch.OutOfMemoryError: CUDA out of memory")
    assert not cluster.deleted("pytorchjobs"), "a failed job is kept for its logs, not cancelled"


def test_a_step_whose_log_cannot_be_read_still_waits_and_never_cancels(tmp_path: Path) -> None:
    """RBAC without pods/log: the follower fails (403) and says so; the run is waited for and not deleted."""
    cluster = FakeCluster(rules=[{"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"],
                                  "verbs": ["create", "get", "delete"]},
                                 {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    with cluster.serve() as server:
        echoed: list[str] = []
        status = run_stage_step(launcher_for(server, tmp_path), "pretrain", StageSpec(name="pretrain-3"), 30,
                                echoed.append)
    assert status.phase == Phase.SUCCEEDED
    assert any("following the log failed" in line and "403" in line for line in echoed)
    assert not cluster.deleted("pytorchjobs")


def test_grpo_rollout_objects_are_owned_by_the_job_and_go_with_it(tmp_path: Path) -> None:
    """Pool placement: the rollout Deployment and Service carry an ownerReference to the PyTorchJob and the run's
    labels; cancel deletes all three."""
    cluster = FakeCluster(scripts={"grpo": PodScript(creating_s=30)})
    spec = StageSpec(name="grpo-1", rollout=RolloutSpec(model="s3://c/m", placement="pool"),
                     labels={"pipeline/runid": "run-7"})
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        handle = launcher.run("grpo", spec)
        job = cluster.objects[("kubeflow.org", "pytorchjobs", "grpo-1")]
        for group, plural in (("apps", "deployments"), ("", "services")):
            rollout = cluster.objects[(group, plural, "grpo-1-rollout")]
            assert rollout["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
            assert rollout["metadata"]["labels"]["pipeline/runid"] == "run-7"
        assert job["metadata"]["labels"]["pipeline/runid"] == "run-7"
        launcher.cancel(handle)
        launcher.cancel(handle)  # a second cancel finds nothing and is fine
    assert cluster.kinds("pytorchjobs") == cluster.kinds("deployments") == cluster.kinds("services") == []


def test_a_sidecar_grpo_run_is_one_job_and_nothing_else(tmp_path: Path) -> None:
    """Sidecar placement (the default): only the PyTorchJob is created, its master pod holds the rollout server, and
    the run succeeds and goes with nothing left behind that could hold a GPU."""
    cluster = FakeCluster()
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        handle = launcher.run("grpo", StageSpec(name="grpo-2", rollout=RolloutSpec(model="s3://c/m")))
        job = cluster.objects[("kubeflow.org", "pytorchjobs", "grpo-2")]
        (sidecar,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["initContainers"]
        assert sidecar["name"] == "rollout" and sidecar["restartPolicy"] == "Always"
        assert launcher.wait(handle, 30).phase == Phase.SUCCEEDED
    assert cluster.kinds("deployments") == cluster.kinds("services") == []
    assert {call.resource for call in cluster.calls if call.verb == "create"} == {"pytorchjobs"}


def predictor_pods(cluster: FakeCluster, name: str) -> list[dict]:
    """The InferenceService's predictor pods the simulated cluster holds now."""
    return [pod for pod in cluster._pods() if pod["metadata"]["labels"].get("serving.kserve.io/inferenceservice")
            == name]


def serving(pods: list[dict]) -> set[str]:
    """The storageUris the ready, not terminating, pods serve."""
    return {pod["spec"]["initContainers"][0]["args"][0] for pod in pods
            if pod["status"]["conditions"][0]["status"] == "True" and "deletionTimestamp" not in pod["metadata"]}


def test_deploy_creates_an_inferenceservice_of_the_runtime_and_waits_for_its_pod(tmp_path: Path) -> None:
    """No InferenceService yet: deploy creates one (model format simplear, the platform's runtime, the storageUri,
    the run's labels) and returns once its predictor pod serves that checkpoint."""
    cluster = FakeCluster()
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        ready = launcher.deploy("shapes", "s3://simplear-checkpoints/runs/x/final", timeout=30,
                                labels={"pipeline/runid": "run-7", "simplear.io/stage": "serve"})
        assert serving(predictor_pods(cluster, "shapes")) == {"s3://simplear-checkpoints/runs/x/final"}
    assert ready["status"]["observedGeneration"] == 1
    live = cluster.objects[("serving.kserve.io", "inferenceservices", "shapes")]
    assert live["metadata"]["labels"]["pipeline/runid"] == "run-7"
    assert live["spec"]["predictor"]["model"] == {"modelFormat": {"name": "simplear"}, "runtime": "simplear-runtime",
                                                  "storageUri": "s3://simplear-checkpoints/runs/x/final"}
    assert ("serving.kserve.io", "inferenceservices", "create") in {(c.group, c.resource, c.verb)
                                                                   for c in cluster.calls}


@pytest.mark.parametrize("strategy", ["RollingUpdate", "Recreate"])
def test_deploy_waits_until_the_new_revisions_pod_serves_the_new_checkpoint(tmp_path: Path, strategy: str) -> None:
    """An update: KServe reports the InferenceService Ready at the new generation while a rolling update still has
    the old pod serving the old model (the Deployment stays Available); deploy returns only once every ready pod
    serves the new storageUri, so the check request that follows cannot score the old model. With Recreate the old
    pod goes first."""
    cluster = FakeCluster()
    platform = chart_platform_config("default")
    platform = platform.model_copy(update={"serving": platform.serving.model_copy(
        update={"deployment_strategy": strategy})})
    with cluster.serve() as server:
        clients = connect(kubeconfig=str(server.kubeconfig(tmp_path / "kubeconfig")))
        launcher = KubernetesLauncher(platform, clients, poll_s=POLL_S)
        launcher.deploy("simplear", "s3://c/old/final", timeout=30)
        started = time.monotonic()
        launcher.deploy("simplear", "s3://c/new/final", timeout=30)
        took = time.monotonic() - started
        pods = predictor_pods(cluster, "simplear")
        assert serving(pods) == {"s3://c/new/final"}
        revision = cluster.revisions["simplear"][-1]
        assert (revision.generation, revision.strategy) == (2, strategy)
        if strategy == "RollingUpdate":
            isvc = clients.isvcs.get("simplear", cluster.namespace)  # already Ready before the pod serves
            assert isvc["status"]["observedGeneration"] == 2
    assert took >= cluster.rollouts.pod_ready_s
    updates = [c for c in cluster.calls if c.resource == "inferenceservices" and c.verb == "update"]
    assert len(updates) == 1


def test_deploy_that_never_serves_the_new_model_fails_with_what_it_saw(tmp_path: Path) -> None:
    """The new pod never gets ready (a checkpoint that does not load): ServeNotReady names the model and why."""
    from simplear.platform.kubernetes_launcher import ServeNotReady

    cluster = FakeCluster()
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        launcher.deploy("simplear", "s3://c/old/final", timeout=30)
        cluster.rollouts.pod_ready_s = 3600
        with pytest.raises(ServeNotReady, match=r"not serving s3://c/broken/final after 2 s: .*(no predictor pod|"
                                                r"not observed|RevisionMissing)"):
            launcher.deploy("simplear", "s3://c/broken/final", timeout=2)


STEP = """
import sys
sys.path.insert(0, {root!r})
from pipelines.components.stage_support import run_stage
run_stage("kubernetes", "", "grpo", "grpo", ["--max-steps", 5], 0, 60, "run-42",
          {{"model": "s3://simplear-checkpoints/sft/final", "engine": "vllm", "placement": "pool"}})
"""


def run_step_until_sigterm(python: Path, cluster: FakeCluster, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a GRPO pipeline step (stage_support.run_stage, backend kubernetes) with `python` against the simulated
    cluster; SIGTERM it once its master container runs, as the kubelet does when KFP cancels the run."""
    with cluster.serve() as server:
        config = tmp_path / "platform.json"
        config.write_text(chart_platform_config("default").model_dump_json(by_alias=True))
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig(tmp_path / "kubeconfig")),
               "SIMPLEAR_PLATFORM_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        step = subprocess.Popen([str(python), "-c", STEP.format(root=str(ROOT))], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not any(name.startswith("grpo-") for name in cluster.created) or time.monotonic() < min(
                cluster.created.values(), default=deadline) + PodScript().started_after() + 0.3:
            assert step.poll() is None, step.communicate()[0]
            assert time.monotonic() < deadline, "the step never created its job"
            time.sleep(0.1)
        step.send_signal(signal.SIGTERM)
        output, _ = step.communicate(timeout=60)
    return subprocess.CompletedProcess(step.args, step.returncode, output)


def test_sigterm_to_the_step_deletes_the_job_and_its_rollout_objects(tmp_path: Path) -> None:
    """A real step process gets SIGTERM while its GRPO job runs: it deletes the PyTorchJob, the rollout Deployment
    and Service, says so, and exits non-zero."""
    cluster = FakeCluster(scripts={"grpo": PodScript(lines=tuple(f"step {i}" for i in range(200)))})
    result = run_step_until_sigterm(Path(sys.executable), cluster, tmp_path)
    assert result.returncode != 0
    assert "cancelling the run (StepCancelled" in result.stdout and "cancelled" in result.stdout
    (job,) = cluster.deleted("pytorchjobs")
    assert job.startswith("grpo-")
    assert cluster.kinds("pytorchjobs") == cluster.kinds("deployments") == cluster.kinds("services") == []


def test_describe_shows_the_progress_the_masters_log_ends_with(tmp_path: Path) -> None:
    """`simplear jobs --cluster describe pytorchjob/...` reads the tail of the master's log (the kubelet's tailLines)
    for the trainer's bar and loss; while the container waits (the kubelet's 400) it shows none and does not fail."""
    lines = ("  0%|          | 0/40 [00:00<?, ?it/s]", " 25%|##5       | 10/40 [00:05<00:15,  2.00it/s]",
             "{'loss': '3.25', 'grad_norm': '0.9', 'learning_rate': '0.0001', 'epoch': '0.1'}",
             " 50%|#####     | 20/40 [00:10<00:10,  2.00it/s]")
    cluster = FakeCluster(scripts={"pretrain": PodScript(lines=lines, creating_s=1.5)})
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path)
        clients = launcher.clients
        handle = launcher.run("pretrain", StageSpec(name="pretrain-1"))
        time.sleep(PodScript().no_pod_s + PodScript().unschedulable_s + 0.2)
        waiting = io.StringIO()
        describe_cluster(clients, lambda run: None, "pytorchjob/pretrain-1", waiting)
        assert "Progress:" not in waiting.getvalue() and "pretrain-1" in waiting.getvalue()
        launcher.wait(handle, 30)
        done = io.StringIO()
        describe_cluster(clients, lambda run: None, "pytorchjob/pretrain-1", done)
    assert "Progress:       20/40 (50%), loss 3.250, ETA 00:10" in done.getvalue()
    assert [call.verb for call in cluster.calls if call.resource == "pods/log"] == ["get"]
