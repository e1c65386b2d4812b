"""Queueing and admission on shared GPU clusters: Kueue's queue label, gang scheduling (Volcano, scheduler-plugins)
through the training operator's runPolicy.schedulingPolicy with a pool rollout server in the job's gang, and a
priority class, from the chart's values through the platform ConfigMap into objects that validate."""

from __future__ import annotations

import pytest
from helpers import chart_platform_config, pod_specs_of, validation_errors
from pydantic import ValidationError

from simplear.platform.config import PlatformConfig, Scheduling
from simplear.platform.manifests import pytorch_job, rollout_deployment
from simplear.platform.manifests.scheduling import AdmissionConflict
from simplear.platform.stage_spec import RolloutSpec, StageSpec


def with_scheduling(**fields: object) -> PlatformConfig:
    """The default platform with these scheduling settings."""
    return chart_platform_config("default").model_copy(update={"scheduling": Scheduling(**fields)})


def grpo(placement: str, nodes: int = 1) -> StageSpec:
    """A GRPO run with its rollout server placed as asked."""
    return StageSpec(name="grpo-1", nodes=nodes, rollout=RolloutSpec(model="s3://c/m", placement=placement))


def test_the_charts_scheduling_values_reach_the_platform_config() -> None:
    """shared-gpu-cluster: the Kueue queue, Volcano gang with its queue and timeout, the priority class and the pool
    placement are what pipeline steps read."""
    platform = chart_platform_config("shared-gpu-cluster")
    assert platform.scheduling == Scheduling(kueue_queue="team-vision", gang="volcano", queue="gpu-research",
                                             schedule_timeout_seconds=900, priority_class="training-high")
    assert platform.rollout_placement == "pool"
    assert chart_platform_config("default").scheduling == Scheduling()
    assert chart_platform_config("default").rollout_placement == "sidecar"


def test_every_job_carries_the_kueue_queue_and_every_pod_the_priority_class() -> None:
    """kueue.x-k8s.io/queue-name on each PyTorchJob; priorityClassName on each pod (the sidecar's pod included)."""
    platform = with_scheduling(kueue_queue="team-vision", priority_class="training-high")
    for stage, spec in (("pretrain", StageSpec(name="pretrain-1", nodes=2)), ("grpo", grpo("sidecar", nodes=2))):
        job = pytorch_job(platform, stage, spec)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-vision"
        assert "schedulingPolicy" not in job["spec"]["runPolicy"]
        assert {pod["priorityClassName"] for _, _, pod in pod_specs_of(job)} == {"training-high"}
        assert validation_errors(job) == []
    plain = pytorch_job(chart_platform_config("default"), "pretrain", StageSpec(name="p"))
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]
    assert all("priorityClassName" not in pod for _, _, pod in pod_specs_of(plain))


def test_a_volcano_gang_holds_the_trainer_pods_and_the_pool_rollout_server() -> None:
    """minAvailable counts the job's pods plus the rollout pod, which joins the job's PodGroup (named after the job)
    the way the operator ties the job's own pods to it: Volcano's group annotation and schedulerName."""
    platform = with_scheduling(gang="volcano", queue="gpu-research", priority_class="training-high",
                               schedule_timeout_seconds=900)
    spec = grpo("pool", nodes=2)
    job = pytorch_job(platform, "grpo", spec)
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {
        "minAvailable": 3, "queue": "gpu-research", "priorityClass": "training-high", "scheduleTimeoutSeconds": 900}
    pod = rollout_deployment(platform, spec, "uid")["spec"]["template"]
    assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "grpo-1"
    assert pod["metadata"]["annotations"]["volcano.sh/task-spec"] == "rollout"
    assert pod["spec"]["schedulerName"] == "volcano" and pod["spec"]["priorityClassName"] == "training-high"
    assert validation_errors(job) == [] and validation_errors(rollout_deployment(platform, spec, "uid")) == []
    sidecar = pytorch_job(platform, "grpo", grpo("sidecar", nodes=2))
    assert sidecar["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == 2  # the server is in the master pod


def test_a_scheduler_plugins_gang_labels_the_rollout_pod() -> None:
    """Coscheduling groups pods by the scheduling.x-k8s.io/pod-group label, under its own scheduler's name."""
    platform = with_scheduling(gang="scheduler-plugins")
    spec = grpo("pool")
    job = pytorch_job(platform, "grpo", spec)
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 2}
    pod = rollout_deployment(platform, spec, "uid")["spec"]["template"]
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "grpo-1"
    assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
    named = with_scheduling(gang="scheduler-plugins", scheduler_name="coscheduler")
    assert rollout_deployment(named, spec, "uid")["spec"]["template"]["spec"]["schedulerName"] == "coscheduler"


def test_kueue_alone_cannot_admit_a_pool_rollout_server_with_its_trainer() -> None:
    """Kueue admits the PyTorchJob as one workload and cannot join a Deployment to it: pool placement with Kueue and
    no gang scheduler is refused with the ways out; the sidecar (one pod) and a gang are fine."""
    with pytest.raises(AdmissionConflict, match="Use rollout placement sidecar .* or gang scheduling"):
        pytorch_job(with_scheduling(kueue_queue="team-vision"), "grpo", grpo("pool"))
    pytorch_job(with_scheduling(kueue_queue="team-vision"), "grpo", grpo("sidecar"))
    pytorch_job(with_scheduling(kueue_queue="team-vision", gang="volcano"), "grpo", grpo("pool"))


def test_scheduling_settings_that_do_not_fit_are_refused() -> None:
    """A Volcano queue without Volcano, or gang settings without a gang scheduler, are config errors."""
    with pytest.raises(ValidationError, match="scheduling.queue is a Volcano queue"):
        Scheduling(gang="scheduler-plugins", queue="q")
    with pytest.raises(ValidationError, match="are for gang scheduling"):
        Scheduling(scheduler_name="volcano")
