"""Helpers kfp embeds beside each component's own source: the launcher of a backend, stage runs, artifacts, journal.

Each function is self-contained (imports inside, no module globals) because kfp copies its source into the
component; the ones a component calls are listed in its `additional_funcs`.
"""

from typing import Any


def progress(message: str) -> None:
    """One progress line, marked so `simplear demo` shows it on the console."""
    print(f"[simplear] {message}", flush=True)


def platform_config() -> Any:
    """The PlatformConfig mounted from the chart's ConfigMap; also points this pod's Store at the platform's S3."""
    import os
    from pathlib import Path

    from simplear.platform.config import PlatformConfig

    config = PlatformConfig.model_validate_json(Path(os.environ["SIMPLEAR_PLATFORM_CONFIG"]).read_text())
    os.environ.setdefault("SIMPLEAR_S3_ENDPOINT", config.store_endpoint)
    os.environ.setdefault("SIMPLEAR_S3_SECURE", str(config.store_secure).lower())
    return config


def backend_store(backend: str) -> Any:
    """A Store reaching the backend's object store (on Kubernetes: the platform's S3, from the mounted config)."""
    from simplear.store import Store

    if backend == "kubernetes":
        platform_config()
    return Store()


def stage_launcher(backend: str, runs_dir: str) -> Any:
    """`local`: processes recorded under runs_dir; `kubernetes`: PyTorchJobs in this pod's namespace."""
    from pathlib import Path

    if backend == "local":
        from simplear.platform.local_launcher import LocalLauncher

        return LocalLauncher(Path(runs_dir) if runs_dir else None)
    if backend == "kubernetes":
        from simplear.platform.cluster_clients import connect
        from simplear.platform.kubernetes_launcher import KubernetesLauncher

        return KubernetesLauncher(platform_config(), connect(), note=progress)
    raise ValueError(f"unknown backend {backend!r}: use local or kubernetes")


def run_stage(backend: str, runs_dir: str, stage: str, step: str, args: list, procs_per_node: int,
              timeout_minutes: int, run_id: str = "", rollout: dict | None = None, nodes: int = 1) -> float:
    """Run one stage on `nodes` pods through the backend's launcher with its rank-0 log echoed; the seconds it took.
    The run is labelled with the pipeline run's id and deleted when the step is stopped (SIGTERM) or times out."""
    import time
    import uuid

    from simplear.platform.manifests.labels import pipeline_run_labels
    from simplear.platform.stage_spec import RolloutSpec, StageSpec
    from simplear.platform.stage_step import run_stage_step

    def echo(line: str) -> None:
        """Log lines as they are; the step's own messages marked as progress."""
        if line.startswith("  "):
            print(line, flush=True)
        else:
            progress(f"{step}: {line}")

    launcher = stage_launcher(backend, runs_dir)
    spec = StageSpec(name=f"{step}-{uuid.uuid4().hex[:8]}", args=tuple(str(a) for a in args), nodes=nodes,
                     procs_per_node=procs_per_node or None, rollout=RolloutSpec(**rollout) if rollout else None,
                     labels=pipeline_run_labels(run_id))
    started = time.monotonic()
    run_stage_step(launcher, stage, spec, timeout_minutes * 60, echo)
    seconds = time.monotonic() - started
    progress(f"{step}: done in {seconds:.0f} s")
    return seconds


def publish(artifact: Any, uri: str, metadata: dict) -> None:
    """Point a KFP output artifact at the store URI holding its content: in its metadata and in its file."""
    import json

    artifact.metadata.update({"uri": uri, **metadata})
    with open(artifact.path, "w") as pointer:
        json.dump({"uri": uri, **metadata}, pointer)


def record_step(store: Any, root: str, step: str, entry: dict) -> None:
    """Write this step's journal entry `<root>/journal/<step>.json`, from which the run's report is built."""
    import json
    from datetime import UTC, datetime

    from simplear.store import join

    entry = {"step": step, "finished": datetime.now(UTC).isoformat(), **entry}
    store.write(join(root, "journal", f"{step}.json"), json.dumps(entry, indent=2).encode())


def training_log(store: Any, run_root: str) -> list[dict]:
    """The rows of a training run's `logs/train.jsonl`; none when it logged no step."""
    import json

    from simplear.store import join

    log = join(run_root, "logs", "train.jsonl")
    return [json.loads(line) for line in store.read(log).decode().splitlines()] if store.exists(log) else []


def publish_training_metrics(rows: list[dict], metrics: Any, seconds: float) -> None:
    """The run's last logged loss, reward and step, and its minutes, as the step's KFP Metrics (the run page shows
    them)."""
    for key in ("step", "loss", "reward"):
        values = [row[key] for row in rows if isinstance(row.get(key), int | float)]
        if values:
            metrics.log_metric(key, values[-1])
    metrics.log_metric("minutes", round(seconds / 60, 2))


STAGE_HELPERS = (platform_config, backend_store, stage_launcher, progress, run_stage, publish, record_step,
                 training_log, publish_training_metrics)
