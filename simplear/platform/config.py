"""The platform's own config, read from the chart's ConfigMap: images, node pools, store, scheduling, KServe serving."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from simplear.config import PRESETS


class CamelStrict(BaseModel):
    """Strict config block (unknown keys refused, frozen) that also reads the camelCase keys Helm values use."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


PoolName = Literal["tokenize", "train", "rollout", "serve", "cpu"]


class NodePool(CamelStrict):
    """Where one kind of workload runs: node selection, tolerations, affinity and accelerators per pod."""

    node_selector: dict[str, str] = {}
    tolerations: tuple[dict, ...] = ()
    affinity: dict | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpus: int = Field(default=0, ge=0)
    cpu: str = "1"
    memory: str = "4Gi"


class Images(CamelStrict):
    """Container image references of each role."""

    base: str
    train: str
    rollout: str
    serve: str
    pull_secrets: tuple[str, ...] = Field(default=(), description="docker-registry Secrets every stage pod pulls with")


class Scheduling(CamelStrict):
    """How stage runs queue and are admitted on a shared GPU cluster: Kueue, gang scheduling, priority (all optional).

    `gang` names the scheduler the training operator was started with (its --gang-scheduler-name): the operator then
    makes a PodGroup named after each PyTorchJob and ties the job's pods to it; a GRPO run's rollout Deployment joins
    the same PodGroup so the trainer and its rollout server are admitted as one gang.
    """

    kueue_queue: str = Field(default="", description="Kueue LocalQueue: kueue.x-k8s.io/queue-name on each PyTorchJob")
    gang: Literal["none", "volcano", "scheduler-plugins"] = "none"
    scheduler_name: str = Field(
        default="", description="schedulerName of gang-scheduled pods; empty: volcano or scheduler-plugins-scheduler"
    )
    queue: str = Field(default="", description="Volcano queue of the PodGroup (runPolicy.schedulingPolicy.queue)")
    schedule_timeout_seconds: int | None = Field(default=None, gt=0, description="how long a gang may wait")
    priority_class: str = Field(default="", description="PriorityClass of every stage pod; empty: the default")

    @model_validator(mode="after")
    def _consistent(self) -> Scheduling:
        if self.queue and self.gang != "volcano":
            raise ValueError("scheduling.queue is a Volcano queue: set gang volcano (Kueue takes kueueQueue)")
        if (self.scheduler_name or self.schedule_timeout_seconds) and self.gang == "none":
            raise ValueError("schedulerName and scheduleTimeoutSeconds are for gang scheduling: set gang")
        return self

    @property
    def gang_scheduler_name(self) -> str:
        """The schedulerName gang-scheduled pods carry (the operator's, unless set)."""
        defaults = {"volcano": "volcano", "scheduler-plugins": "scheduler-plugins-scheduler", "none": ""}
        return self.scheduler_name or defaults[self.gang]


class Serving(CamelStrict):
    """How a model is served the KServe way: the chart's ServingRuntime and what each InferenceService asks of it."""

    runtime: str = Field(description="the ServingRuntime (or ClusterServingRuntime) for model format simplear")
    cluster_runtime: bool = Field(default=False, description="the runtime is a ClusterServingRuntime")
    service_account: str = Field(description="predictor ServiceAccount listing the store Secret (KServe's link)")
    deployment_mode: Literal["Standard", "RawDeployment", "Knative", "Serverless"] = "Standard"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = Field(
        default=None, description="KServe autoscaling metric; None: KServe's default"
    )
    scale_target: int | None = Field(default=None, gt=0, description="target value of scale_metric per replica")
    timeout_seconds: int = Field(default=300, gt=0, description="request timeout (the server cancels at it too)")
    startup_seconds: int = Field(default=600, gt=0, description="how long loading the model may take")
    deployment_strategy: Literal["Recreate", "RollingUpdate"] = Field(
        default="Recreate", description="Recreate: a new revision takes the old one's GPU instead of waiting for one"
    )
    prometheus_scrape: bool = Field(default=True, description="KServe's scrape annotations for the runtime's /metrics")

    @model_validator(mode="after")
    def _consistent(self) -> Serving:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if (self.scale_metric is None) != (self.scale_target is None):
            raise ValueError("scaleMetric and scaleTarget go together")
        return self


class PlatformConfig(CamelStrict):
    """What pipeline components read from the platform ConfigMap the Helm chart installs."""

    images: Images
    pools: dict[PoolName, NodePool]
    store_endpoint: str
    store_secure: bool = False
    store_secret: str = Field(description="name of the Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    data_bucket: str = "simplear-data"
    checkpoint_bucket: str = "simplear-checkpoints"
    inference_service: str = Field(default="", description="InferenceService the pipelines deploy to; empty: none")
    serving: Serving | None = Field(default=None, description="KServe serving; None: kserve disabled in the chart")
    scheduling: Scheduling = Scheduling()
    rollout_placement: Literal["sidecar", "pool"] = Field(
        default="sidecar", description="GRPO's rollout server: in the trainer's master pod, or a Deployment on its pool"
    )
    presets: tuple[str, ...] = tuple(PRESETS)

    @model_validator(mode="after")
    def _known(self) -> PlatformConfig:
        missing = {"tokenize", "train", "rollout", "serve", "cpu"} - set(self.pools)
        if missing:
            raise ValueError(f"node pools missing: {', '.join(sorted(missing))}")
        unknown = set(self.presets) - set(PRESETS)
        if unknown:
            raise ValueError(f"unknown presets {sorted(unknown)}; known: {', '.join(PRESETS)}")
        if self.inference_service and self.serving is None:
            raise ValueError(f"inferenceService {self.inference_service} set but no serving runtime")
        return self
