"""Kubernetes objects of the platform as plain dicts, built from config by pure functions (no I/O)."""

from simplear.platform.manifests.pod_security import container_security_context, pod_security_context
from simplear.platform.manifests.pytorchjob import pytorch_job, rank_command
from simplear.platform.manifests.rollout import rollout_deployment, rollout_name, rollout_service, rollout_url
from simplear.platform.manifests.serving import inference_service, serve_service_account, serving_runtime

__all__ = [
    "container_security_context",
    "inference_service",
    "pod_security_context",
    "pytorch_job",
    "rank_command",
    "rollout_deployment",
    "rollout_name",
    "rollout_service",
    "rollout_url",
    "serve_service_account",
    "serving_runtime",
]
