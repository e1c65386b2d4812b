"""checkov over the rendered chart (every value set) and the Dockerfiles: only the documented exceptions fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import VALUE_SETS, rendered

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SECURITY_MD = ROOT / "helm" / "simplear" / "SECURITY.md"
EXCEPTION_ROW = re.compile(r"^\|\s*`?(CKV2?_[A-Z0-9]+_\d+)`?\s*\|", re.MULTILINE)


def write_scan_tree(target: Path) -> None:
    """Rendered manifests of every value set, one file per template, and the images' Dockerfile."""
    for value_set in VALUE_SETS:
        for template, text in rendered(value_set).items():
            if template.endswith(".yaml"):
                out = target / "manifests" / value_set / template.replace("/", "_")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text)
    (target / "images").mkdir()
    shutil.copy(ROOT / "images" / "Dockerfile", target / "images" / "Dockerfile")


def scan(tmp_dir: str) -> tuple[dict[str, Any], ...]:
    """checkov's JSON report per framework (kubernetes, dockerfile) for the tree under tmp_dir."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run scripts/checkov.sh first")
    write_scan_tree(Path(tmp_dir))
    result = subprocess.run(
        [str(CHECKOV), "--directory", tmp_dir, "--framework", "kubernetes", "dockerfile",
         "--output", "json", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    return tuple(reports if isinstance(reports, list) else [reports])


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], ...]:
    """The scan, run once for this module."""
    return scan(str(tmp_path_factory.mktemp("checkov")))


def failing(reports: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """check id -> resources failing it."""
    found: dict[str, set[str]] = {}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            found.setdefault(check["check_id"], set()).add(check["resource"])
    return found


def documented_exceptions() -> set[str]:
    """Check ids SECURITY.md lists as accepted failures."""
    return set(EXCEPTION_ROW.findall(SECURITY_MD.read_text()))


def test_both_frameworks_scanned_everything_without_parse_errors(reports: tuple[dict[str, Any], ...]) -> None:
    """Kubernetes manifests and Dockerfiles were both scanned, every file parsed."""
    summaries = {report["check_type"]: report["summary"] for report in reports}
    assert summaries.keys() == {"kubernetes", "dockerfile"}
    assert all(summary["parsing_errors"] == 0 for summary in summaries.values())
    assert summaries["dockerfile"]["resource_count"] == 1
    assert summaries["kubernetes"]["passed"] > 0


def test_only_documented_checks_fail(reports: tuple[dict[str, Any], ...]) -> None:
    """Any failing check not explained in helm/simplear/SECURITY.md fails the build."""
    undocumented = {check: sorted(where) for check, where in failing(reports).items()}
    for check in documented_exceptions():
        undocumented.pop(check, None)
    assert undocumented == {}, f"new checkov failures; fix them or explain them in {SECURITY_MD}"


def test_no_documented_exception_is_stale(reports: tuple[dict[str, Any], ...]) -> None:
    """Every exception in SECURITY.md still fails: fixed checks leave the list."""
    assert documented_exceptions() - failing(reports).keys() == set()
