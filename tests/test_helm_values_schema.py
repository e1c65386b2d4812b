"""Bad values stop the install with a message that names the offending key."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from helpers import CHART, chart_without_pipelines, render_values

SCHEMA_VIOLATIONS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("latest tag", {"images": {"serve": {"tag": "latest"}}}, ["/images/serve/tag"]),
    ("empty tag", {"images": {"train": {"tag": ""}}}, ["/images/train/tag"]),
    ("bad digest", {"images": {"base": {"digest": "sha256:xyz"}}}, ["/images/base/digest"]),
    ("pull policy", {"images": {"pullPolicy": "Sometimes"}}, ["/images/pullPolicy"]),
    ("negative gpus", {"pools": {"serve": {"gpus": -1}}}, ["/pools/serve/gpus", "minimum"]),
    ("fractional gpus", {"pools": {"train": {"gpus": 0.5}}}, ["/pools/train/gpus"]),
    ("missing pool", {"pools": {"rollout": None}}, ["/pools", "rollout"]),
    ("unknown pool", {"pools": {"eval": {"gpus": 1}}}, ["/pools", "eval"]),
    ("gpu resource name", {"pools": {"serve": {"gpuResource": "nvidia gpu"}}}, ["/pools/serve/gpuResource"]),
    ("memory quantity", {"pools": {"cpu": {"memory": "lots"}}}, ["/pools/cpu/memory"]),
    (
        "toleration effect",
        {"pools": {"serve": {"tolerations": [{"effect": "Sometimes"}]}}},
        ["/pools/serve/tolerations/0/effect"],
    ),
    ("unknown preset", {"presets": ["tiny", "7B"]}, ["/presets/1"]),
    ("bucket name", {"store": {"dataBucket": "Simplear_Data"}}, ["/store/dataBucket"]),
    ("endpoint with scheme", {"store": {"endpoint": "https://s3.example.com"}}, ["/store/endpoint"]),
    ("deployment mode", {"kserve": {"deploymentMode": "Serverles"}}, ["/kserve/deploymentMode"]),
    ("replica type", {"kserve": {"minReplicas": "one"}}, ["/kserve/minReplicas"]),
    ("kfp endpoint", {"kfp": {"endpoint": "ml-pipeline:8888"}}, ["/kfp/endpoint"]),
    ("root pods", {"podSecurityContext": {"runAsNonRoot": False}}, ["/podSecurityContext/runAsNonRoot"]),
    (
        "escalation",
        {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
        ["/containerSecurityContext/allowPrivilegeEscalation"],
    ),
    ("typo at top level", {"minoi": {"enabled": False}}, ["minoi"]),
    ("typo in a block", {"kserve": {"modelname": "x"}}, ["/kserve", "modelname"]),
]


@pytest.mark.parametrize(("case", "values", "expected"), SCHEMA_VIOLATIONS, ids=[c[0] for c in SCHEMA_VIOLATIONS])
def test_schema_refuses_bad_values_naming_the_key(case: str, values: dict[str, Any], expected: list[str]) -> None:
    """The values schema rejects the value and the message points at it."""
    with pytest.raises(helm.HelmValuesError) as refused:
        render_values(values)
    for fragment in expected:
        assert fragment in str(refused.value), str(refused.value)


def test_schema_accepts_the_defaults() -> None:
    """The chart's own values pass its schema (the cases above fail for their own reason)."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({})


CROSS_FIELD_VIOLATIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "external store without credentials",
        {"minio": {"enabled": False}, "store": {"endpoint": "s3.example.com"}},
        "store.existingSecret is required when minio.enabled=false",
    ),
    (
        "external store without endpoint",
        {"minio": {"enabled": False}, "store": {"existingSecret": "s3"}},
        "store.endpoint (host:port of the S3 endpoint) is required when minio.enabled=false",
    ),
    (
        "endpoint beside the bundled MinIO",
        {"store": {"endpoint": "s3.example.com"}},
        "store.endpoint names an external S3 endpoint, but minio.enabled=true",
    ),
    (
        "pipeline registration without pipelines",
        {"kfp": {"enabled": True}},
        "kfp.enabled=true but the chart holds no compiled pipelines",
    ),
]


@pytest.mark.parametrize(
    ("case", "values", "message"), CROSS_FIELD_VIOLATIONS, ids=[c[0] for c in CROSS_FIELD_VIOLATIONS]
)
def test_inconsistent_values_fail_with_what_to_do(case: str, values: dict[str, Any], message: str) -> None:
    """Rules spanning several keys are checked while rendering, with a message saying what is missing."""
    chart = chart_without_pipelines() if case == "pipeline registration without pipelines" else CHART
    with pytest.raises(helm.HelmError) as refused:
        render_values(values, chart)
    assert message in str(refused.value)
