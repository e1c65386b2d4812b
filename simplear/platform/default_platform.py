"""The PlatformConfig the chart's default values render, for a release: what `simplear manifests` builds from."""

from __future__ import annotations

from simplear.config import PRESETS
from simplear.platform.config import Images, NodePool, PlatformConfig, Serving

CHART = "simplear"
IMAGE_PREFIX = "ghcr.io/simplear/simplear"
CHART_VERSION_TAG = "0.1.0"
MINIO_PORT = 9000
GPU_TAINT = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)


def chart_fullname(release: str) -> str:
    """The chart's resource-name prefix: the release name when it holds the chart name, else <release>-simplear."""
    name = release if CHART in release else f"{release}-{CHART}"
    return name[:63].rstrip("-")


def default_platform_config(release: str = CHART, namespace: str | None = None) -> PlatformConfig:
    """The chart's default values for `release`; without a namespace the MinIO endpoint is namespace-relative."""
    fullname = chart_fullname(release)
    minio = f"{fullname}-minio"
    return PlatformConfig(
        images=Images(**{role: f"{IMAGE_PREFIX}-{role}:{CHART_VERSION_TAG}"
                         for role in ("base", "train", "rollout", "serve")}),
        pools={
            "tokenize": NodePool(tolerations=GPU_TAINT, gpus=1, cpu="8", memory="64Gi"),
            "train": NodePool(tolerations=GPU_TAINT, gpus=8, cpu="64", memory="512Gi"),
            "rollout": NodePool(tolerations=GPU_TAINT, gpus=1, cpu="8", memory="64Gi"),
            "serve": NodePool(tolerations=GPU_TAINT, gpus=1, cpu="4", memory="32Gi"),
            "cpu": NodePool(gpus=0, cpu="2", memory="8Gi"),
        },
        store_endpoint=f"{minio}.{namespace}.svc:{MINIO_PORT}" if namespace else f"{minio}:{MINIO_PORT}",
        store_secure=False,
        store_secret=f"{fullname}-store",
        inference_service=fullname,
        serving=Serving(runtime=f"{fullname}-runtime", service_account=f"{fullname}-serve"),
        presets=tuple(PRESETS),
    )
