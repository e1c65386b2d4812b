"""Where a pool's pods go and what they reserve: nodeSelector, tolerations, affinity, requests and limits."""

from __future__ import annotations

import copy

from simplear.platform.config import NodePool, PlatformConfig


def pool(config: PlatformConfig, name: str) -> NodePool:
    """The node pool called `name` in the platform config."""
    if name not in config.pools:
        raise ValueError(f"unknown node pool {name!r}; the platform config has {', '.join(config.pools)}")
    return config.pools[name]


def placement(node_pool: NodePool) -> dict:
    """The pod-spec fields that put a pod on the pool: nodeSelector, tolerations, affinity (those it sets), copied."""
    fields: dict = {}
    if node_pool.node_selector:
        fields["nodeSelector"] = dict(node_pool.node_selector)
    if node_pool.tolerations:
        fields["tolerations"] = copy.deepcopy(list(node_pool.tolerations))
    if node_pool.affinity:
        fields["affinity"] = copy.deepcopy(node_pool.affinity)
    return fields


def resources(node_pool: NodePool) -> dict:
    """Requests equal to limits: the pool's cpu and memory, and its GPUs when it has any."""
    amounts = {"cpu": node_pool.cpu, "memory": node_pool.memory}
    if node_pool.gpus:
        amounts[node_pool.gpu_resource] = str(node_pool.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}
