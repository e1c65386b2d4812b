"""The Kubernetes launcher and a pipeline step against a simulated API server (tests/kube_api_sim.py says which
upstream behaviour each part simulates): pods that take their time, 400s while a container starts, cut streams,
failures, GRPO's rollout server in both placements, the InferenceService deploy flow, and a step process that
receives SIGTERM."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
from helpers import chart_platform_config, launcher_for, run_step_until_sigterm
from kube_api_sim import FakeCluster, PodScript

from simplear.platform.cluster_clients import connect
from simplear.platform.jobs_cluster import describe_cluster
from simplear.platform.kubernetes_launcher import KubernetesLauncher
from simplear.platform.launcher import Phase, StageFailed
from simplear.platform.stage_spec import RolloutSpec, StageSpec
from simplear.platform.stage_step import run_stage_step

POLL_S = 0.1


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
        with launcher.deploy("shapes", "s3://simplear-checkpoints/runs/x/final", timeout=30,
                             labels={"pipeline/runid": "run-7", "simplear.io/stage": "serve"}) as deployment:
            assert serving(predictor_pods(cluster, "shapes")) == {"s3://simplear-checkpoints/runs/x/final"}
        assert predictor_pods(cluster, "shapes"), "the InferenceService outlives the deployment's `with`"
    assert (deployment.name, deployment.url, deployment.reported_url) == (
        "shapes", "http://shapes-predictor.ml.svc", "http://shapes-ml.example.com")
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


def test_deploy_polls_until_the_inferenceservice_is_ready(tmp_path: Path) -> None:
    """KServe takes a few polls to report the new generation Ready (RevisionMissing until then) and its pod to load
    the model: deploy keeps asking, says why it waits, and returns the platform's InferenceService when the name is
    empty."""
    cluster = FakeCluster()
    cluster.rollouts.observed_s = 0.6
    notes: list[str] = []
    with cluster.serve() as server:
        launcher = launcher_for(server, tmp_path, notes)
        started = time.monotonic()
        deployment = launcher.deploy("", "s3://c/run/final", timeout=30)
        took = time.monotonic() - started
    platform_name = chart_platform_config("default").inference_service
    assert deployment.name == platform_name and deployment.storage_uri == "s3://c/run/final"
    gets = [c for c in cluster.calls if c.resource == "inferenceservices" and c.verb == "get"]
    assert len(gets) >= 4 and took >= cluster.rollouts.pod_ready_s
    assert any("RevisionMissing" in note for note in notes)


@pytest.mark.parametrize("update", [None, "RollingUpdate", "Recreate"])
def test_deploy_of_a_model_that_fails_to_load_stops_with_kserves_reason(tmp_path: Path, update: str | None) -> None:
    """The storage initializer fails on the new checkpoint and KServe reports the model BlockedByFailedLoad: deploy
    stops at once (not at its timeout) with the reason, exit code and message, also when a rolling update keeps the
    old pod serving and the InferenceService Ready."""
    from simplear.platform.kubernetes_launcher import ServeNotReady

    cluster = FakeCluster()
    cluster.rollouts.failing["s3://c/broken/final"] = "NoSuchKey: runs/broken/final/model.safetensors"
    platform = chart_platform_config("default")
    platform = platform.model_copy(update={"serving": platform.serving.model_copy(
        update={"deployment_strategy": update or "Recreate"})})
    with cluster.serve() as server:
        clients = connect(kubeconfig=str(server.kubeconfig(tmp_path / "kubeconfig")))
        launcher = KubernetesLauncher(platform, clients, poll_s=POLL_S)
        if update:
            launcher.deploy("simplear", "s3://c/old/final", timeout=30)
        started = time.monotonic()
        with pytest.raises(ServeNotReady, match=r"InferenceService simplear cannot serve s3://c/broken/final: "
                                                r"ModelLoadFailed \(exit code 1\): NoSuchKey: runs/broken"):
            launcher.deploy("simplear", "s3://c/broken/final", timeout=30)
        assert time.monotonic() - started < 5
        still = {"RollingUpdate": {"s3://c/old/final"}}.get(update, set())
        assert serving(predictor_pods(cluster, "simplear")) == still


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
