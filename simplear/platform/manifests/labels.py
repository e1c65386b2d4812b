"""Labels and annotations the platform's objects and pods carry."""

from __future__ import annotations

# The chart's NetworkPolicy admits only pods with this label to MinIO.
STORE_CLIENT_LABEL = {"simplear.io/store-client": "true"}
# An Istio sidecar would sit between NCCL peers and keep finished pods running: never inject one.
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
RUN_LABEL = "simplear.io/run"
STAGE_LABEL = "simplear.io/stage"
# The label Kubeflow Pipelines' API server puts on a run's Workflow (backend/src/apiserver/resource/resource_manager.go,
# util.LabelKeyWorkflowRunId): `kubectl get workflows,pytorchjobs,deployments,inferenceservices -l pipeline/runid=ID`.
PIPELINE_RUN_LABEL = "pipeline/runid"
COMPONENT_LABEL = "app.kubernetes.io/component"


def pipeline_run_labels(run_id: str) -> dict[str, str]:
    """The label naming the Kubeflow Pipelines run that started an object; none outside a pipeline run."""
    return {PIPELINE_RUN_LABEL: run_id} if run_id else {}


def run_labels(stage: str, run: str, component: str | None = None, extra: dict[str, str] | None = None
               ) -> dict[str, str]:
    """Labels of every object of one run; `component` tells a run's parts apart (default: the stage)."""
    return {
        **(extra or {}),
        "app.kubernetes.io/name": "simplear",
        "app.kubernetes.io/part-of": "simplear",
        "app.kubernetes.io/managed-by": "simplear",
        COMPONENT_LABEL: component or stage,
        STAGE_LABEL: stage,
        RUN_LABEL: run,
    }


def pod_labels(stage: str, run: str, component: str | None = None, extra: dict[str, str] | None = None
               ) -> dict[str, str]:
    """A run's pod labels: the run's labels and the store-client label (every stage reads or writes the store)."""
    return {**run_labels(stage, run, component, extra), **STORE_CLIENT_LABEL}


def metadata(name: str, labels: dict[str, str], namespace: str | None) -> dict:
    """Object metadata; no namespace when None (`kubectl apply -n` or the client's namespace decides)."""
    meta: dict = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta
