"""Each workload lands on its node pool: the pool's nodeSelector, tolerations, affinity and GPUs, nothing else."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from helpers import CHART, VALUE_SETS, objects, parse, pod_specs, render_values

# Which pool each workload of the chart runs on.
WORKLOAD_POOLS = {
    "ServingRuntime/simplear-runtime": "serve",
    "ClusterServingRuntime/simplear-gpu": "serve",
    "Deployment/simplear-minio": "cpu",
    "Job/simplear-buckets": "cpu",
    "Job/simplear-register-pipelines": "cpu",
    "Pod/simplear-test": "cpu",
}
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")


def pools_of(value_set: str) -> dict[str, Any]:
    """The pools the value set installs with (defaults merged with its overrides)."""
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(VALUE_SETS[value_set])["pools"]


def placement(spec: dict[str, Any]) -> dict[str, Any]:
    """nodeSelector, tolerations and affinity of a pod spec, empty when absent."""
    return {
        "nodeSelector": spec.get("nodeSelector", {}),
        "tolerations": spec.get("tolerations", []),
        "affinity": spec.get("affinity", {}),
    }


def pool_placement(pool: dict[str, Any]) -> dict[str, Any]:
    """What a pod on the pool must carry."""
    return {"nodeSelector": pool["nodeSelector"], "tolerations": pool["tolerations"], "affinity": pool["affinity"]}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_workload_carries_exactly_its_pools_placement(value_set: str) -> None:
    """nodeSelector, tolerations and affinity of each pod spec are its pool's, verbatim."""
    pools = pools_of(value_set)
    specs = dict(pod_specs(objects(value_set)))
    assert specs.keys() <= WORKLOAD_POOLS.keys()
    for workload, spec in specs.items():
        assert placement(spec) == pool_placement(pools[WORKLOAD_POOLS[workload]]), workload


@pytest.mark.parametrize("value_set", ["default", "custom-pools"])
def test_the_predictor_gets_the_serve_pools_gpus_cpu_and_memory(value_set: str) -> None:
    """The GPU workload requests and limits exactly the serve pool's GPU resource and count, cpu and memory."""
    serve = pools_of(value_set)["serve"]
    specs = dict(pod_specs(objects(value_set)))
    (container,) = specs["ServingRuntime/simplear-runtime"]["containers"]
    expected = {"cpu": str(serve["cpu"]), "memory": serve["memory"], serve["gpuResource"]: serve["gpus"]}
    assert container["resources"] == {"requests": expected, "limits": expected}


def test_custom_pools_move_the_predictor_to_another_accelerator() -> None:
    """The custom value set really differs from the default: AMD GPUs, two of them, on the MI300 nodes."""
    specs = dict(pod_specs(objects("custom-pools")))
    predictor = specs["ServingRuntime/simplear-runtime"]
    assert predictor["nodeSelector"] == {"pool": "serve-mi300"}
    assert predictor["containers"][0]["resources"]["limits"]["amd.com/gpu"] == 2
    assert "nvidia.com/gpu" not in predictor["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_cpu_workloads_request_no_gpu(value_set: str) -> None:
    """MinIO, jobs and the test pod never ask for an accelerator."""
    for workload, spec in pod_specs(objects(value_set)):
        if WORKLOAD_POOLS[workload] == "cpu":
            for container in spec["containers"]:
                resources = container["resources"]
                asked = set(resources["requests"]) | set(resources["limits"])
                assert not asked & set(GPU_RESOURCES), workload


def test_a_serve_pool_without_gpus_asks_for_none() -> None:
    """gpus: 0 on the serve pool leaves the GPU resource out entirely (a CPU-only predictor)."""
    pools = pools_of("default")
    pools["serve"] = {**pools["serve"], "gpus": 0}
    specs = dict(pod_specs(parse(render_values({"pools": pools}))))
    (container,) = specs["ServingRuntime/simplear-runtime"]["containers"]
    expected = {"cpu": pools["serve"]["cpu"], "memory": pools["serve"]["memory"]}
    assert container["resources"] == {"requests": expected, "limits": expected}
