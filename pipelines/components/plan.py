"""The first step of every pipeline: where this run's data, checkpoints, evaluations and journal go."""

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import backend_store, platform_config, progress, record_step


@on_base_image(platform_config, backend_store, progress, record_step)
def plan_run(backend: str, store_root: str, run_tag: str, run_id: str) -> str:
    """The run's root URI, `<store_root>/<run_tag or run id>` (store_root empty: the checkpoint bucket)."""
    from datetime import UTC, datetime

    from simplear.store import join

    if not store_root and backend == "local":
        raise ValueError("store_root is required with the local backend: a directory or s3:// URI")
    store = backend_store(backend)
    base = store_root or f"s3://{platform_config().checkpoint_bucket}/pipelines"
    root = join(base, run_tag or run_id)
    started = datetime.now(UTC).isoformat()
    record_step(store, root, "plan", {"stage": "plan", "started": started, "backend": backend, "root": root})
    progress(f"plan: run root {root}")
    return root
