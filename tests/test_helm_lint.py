"""`helm lint --strict` passes for every supported value set, and catches a broken chart."""

from __future__ import annotations

import shutil
from pathlib import Path

import helm_python as helm
import pytest
from helpers import CHART, NAMESPACE, VALUE_SETS

WARNING = 2


def lint_findings(chart: Path, values: dict) -> list[str]:
    """Warnings and errors of a strict lint (info-level hints such as 'icon is recommended' excluded)."""
    report = helm.lint(chart, values, strict=True, namespace=NAMESPACE, kube_version="v1.29.0")
    messages = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= WARNING]
    return messages + report["errors"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_strict_lint_passes(value_set: str) -> None:
    """Strict lint reports no warning or error."""
    assert lint_findings(CHART, VALUE_SETS[value_set]) == []


def test_strict_lint_reports_a_broken_template(tmp_path: Path) -> None:
    """The lint run is real: a template with a syntax error is reported."""
    broken = tmp_path / "simplear"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.nope. }}\n")
    assert any("broken.yaml" in finding for finding in lint_findings(broken, {}))
