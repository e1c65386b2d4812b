"""How a stage run is queued and admitted: Kueue's queue label, gang scheduling of one run's pods, priority.

Gang scheduling follows the training operator (training-operator pkg/controller.v1/control/podgroup_control.go): with
--gang-scheduler-name it makes a PodGroup named after the PyTorchJob, of minMember = runPolicy.schedulingPolicy
.minAvailable, and ties each job pod to it (Volcano: annotation scheduling.k8s.io/group-name and schedulerName
volcano; scheduler-plugins: label scheduling.x-k8s.io/pod-group and its schedulerName). A pod of another owner joins
that PodGroup by carrying the same marks, which is how a GRPO run's rollout Deployment is admitted with its trainer.
Kueue admits one Workload per job and groups plain pods only (kueue.x-k8s.io/pod-group-name), so it cannot join a
Deployment to a PyTorchJob: with Kueue the rollout server must be the trainer pod's sidecar.
"""

from __future__ import annotations

from simplear.platform.config import PlatformConfig

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
VOLCANO_TASK_ANNOTATION = "volcano.sh/task-spec"
COSCHEDULING_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"


class AdmissionConflict(ValueError):
    """The run's placement cannot be admitted as one unit by the platform's queueing."""


def queue_labels(config: PlatformConfig) -> dict[str, str]:
    """The Kueue LocalQueue label of a PyTorchJob, when the platform queues with Kueue."""
    queue = config.scheduling.kueue_queue
    return {KUEUE_QUEUE_LABEL: queue} if queue else {}


def check_admission(config: PlatformConfig, run: str, separate_pods: int) -> None:
    """AdmissionConflict when `separate_pods` pods outside the job (a pool rollout server) cannot join its admission."""
    scheduling = config.scheduling
    if separate_pods and scheduling.kueue_queue and scheduling.gang == "none":
        raise AdmissionConflict(
            f"run {run}: Kueue admits a PyTorchJob and a Deployment as separate workloads (it groups plain pods "
            "only), so the trainer could hold its GPUs while its rollout server waits for quota. Use rollout "
            "placement sidecar (one pod, one workload) or gang scheduling (scheduling.gang volcano or "
            "scheduler-plugins, which joins the rollout pod to the job's PodGroup)."
        )


def scheduling_policy(config: PlatformConfig, pods: int) -> dict:
    """runPolicy.schedulingPolicy of a gang of `pods` pods (the job's and its pool rollout server's); {} when off."""
    scheduling = config.scheduling
    if scheduling.gang == "none":
        return {}
    policy: dict = {"minAvailable": pods}
    if scheduling.queue:
        policy["queue"] = scheduling.queue
    if scheduling.priority_class:
        policy["priorityClass"] = scheduling.priority_class
    if scheduling.schedule_timeout_seconds is not None:
        policy["scheduleTimeoutSeconds"] = scheduling.schedule_timeout_seconds
    return {"schedulingPolicy": policy}


def pod_priority(config: PlatformConfig) -> dict:
    """The pod-spec field priorityClassName, when the platform sets one."""
    priority = config.scheduling.priority_class
    return {"priorityClassName": priority} if priority else {}


def gang_member(config: PlatformConfig, job: str, task: str) -> tuple[dict, dict, dict]:
    """(pod labels, pod annotations, pod-spec fields) that put a pod owned by something else into the job's gang."""
    scheduling = config.scheduling
    if scheduling.gang == "none":
        return {}, {}, {}
    spec = {"schedulerName": scheduling.gang_scheduler_name}
    if scheduling.gang == "volcano":
        return {}, {VOLCANO_GROUP_ANNOTATION: job, VOLCANO_TASK_ANNOTATION: task}, spec
    return {COSCHEDULING_GROUP_LABEL: job}, {}, spec
