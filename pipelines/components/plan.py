"""The first steps of every pipeline: find the platform it runs on, then where this run's files go."""

from typing import NamedTuple

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import backend_store, platform_config, progress, record_step


@on_base_image(progress)
def find_platform(backend: str, release: str) -> NamedTuple("Platform", config_map=str, store_secret=str):
    """The platform ConfigMap of this pod's namespace (the release's, when several) and the store Secret it names."""
    from collections import namedtuple

    platform = namedtuple("Platform", ["config_map", "store_secret"])
    if backend != "kubernetes":
        return platform("", "")
    from simplear.platform.cluster_clients import connect
    from simplear.platform.platform_discovery import find_platform as find

    clients = connect()
    found = find(clients.core, clients.namespace, release)
    progress(f"platform: release {found.release} in {clients.namespace}, ConfigMap {found.config_map}, "
             f"store Secret {found.config.store_secret}")
    return platform(found.config_map, found.config.store_secret)


@on_base_image(platform_config, backend_store, progress, record_step)
def plan_run(backend: str, store_root: str, run_tag: str,
             run_id: str) -> NamedTuple("Plan", root=str, data_root=str):
    """The run's folders `<base>/<run_tag or run id>`: base is store_root for both, else the checkpoint bucket for
    checkpoints, evaluations and the report (root) and the data bucket for datasets and token shards (data_root)."""
    from collections import namedtuple
    from datetime import UTC, datetime

    from simplear.store import join

    if not store_root and backend == "local":
        raise ValueError("store_root is required with the local backend: a directory or s3:// URI")
    store = backend_store(backend)
    name = run_tag or run_id
    if store_root:
        root = data_root = join(store_root, name)
    else:
        config = platform_config()
        root = join(f"s3://{config.checkpoint_bucket}/pipelines", name)
        data_root = join(f"s3://{config.data_bucket}/pipelines", name)
    started = datetime.now(UTC).isoformat()
    record_step(store, root, "plan", {"stage": "plan", "started": started, "backend": backend, "root": root,
                                      "data_root": data_root})
    progress(f"plan: run root {root}, data under {data_root}")
    return namedtuple("Plan", ["root", "data_root"])(root, data_root)
