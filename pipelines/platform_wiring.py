"""How every component pod sits on the cluster: base image, store Secret as env, platform ConfigMap, cpu pool, label.

The Secret and the ConfigMap are named by the release that installed the platform, which a compiled pipeline cannot
know: the first task of every run finds the platform ConfigMap in its namespace and hands their names on
(kfp-kubernetes turns those task outputs into `taskOutputParameter`s, which the KFP driver resolves since 2.5.0).
"""

from dataclasses import dataclass
from typing import Any

from kfp import kubernetes
from kfp.dsl import PipelineTask

from simplear.platform.default_platform import CHART_VERSION_TAG, IMAGE_PREFIX

BASE_IMAGE = f"{IMAGE_PREFIX}-base:{CHART_VERSION_TAG}"
PLATFORM_DIR = "/etc/simplear"
PLATFORM_JSON = f"{PLATFORM_DIR}/platform.json"
STORE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
STORE_CLIENT_LABEL = ("simplear.io/store-client", "true")
RUN_AS = 10001
CPU_POOL_CPU = "2"
CPU_POOL_MEMORY = "8Gi"
CPU_POOL_NODE_SELECTOR: dict = {}
CPU_POOL_TOLERATIONS: list = []


@dataclass(frozen=True)
class ClusterParameters:
    """The pipeline parameters that place component pods: image, the platform's release, the cpu pool's placement."""

    base_image: Any
    release: Any
    cpu_node_selector: Any
    cpu_tolerations: Any


@dataclass(frozen=True)
class PlatformNames:
    """Where the found platform keeps its settings: the ConfigMap and the store Secret (outputs of the first task)."""

    config_map: Any
    store_secret: Any


def on_cpu_pool(task: PipelineTask, cluster: ClusterParameters, display_name: str) -> PipelineTask:
    """Name the task and give its pod the base image, the cpu pool's size and placement, and the run's security."""
    task.set_display_name(display_name)
    task.set_container_image(cluster.base_image)
    task.set_cpu_request(CPU_POOL_CPU).set_cpu_limit(CPU_POOL_CPU)
    task.set_memory_request(CPU_POOL_MEMORY).set_memory_limit(CPU_POOL_MEMORY)
    kubernetes.add_node_selector_json(task, cluster.cpu_node_selector)
    kubernetes.add_toleration_json(task, cluster.cpu_tolerations)
    kubernetes.set_security_context(task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True)
    return task


def on_platform(task: PipelineTask, cluster: ClusterParameters, platform: PlatformNames,
                display_name: str) -> PipelineTask:
    """A task on the cpu pool that also gets the store credentials, the platform config and the MinIO client label."""
    on_cpu_pool(task, cluster, display_name)
    task.set_env_variable("SIMPLEAR_PLATFORM_CONFIG", PLATFORM_JSON)
    kubernetes.use_secret_as_env(task, secret_name=platform.store_secret, secret_key_to_env=STORE_CREDENTIALS)
    kubernetes.use_config_map_as_volume(task, config_map_name=platform.config_map, mount_path=PLATFORM_DIR)
    kubernetes.add_pod_label(task, *STORE_CLIENT_LABEL)
    return task
