"""Run a compiled pipeline (the YAML the cluster gets) with Kubeflow Pipelines' local subprocess runner."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from simplear.demo.console import ProgressConsole


def run_local_pipeline(path: Path, arguments: dict[str, Any], work: Path, console: ProgressConsole) -> Any:
    """Run the pipeline in this environment (no pip installs), its output through `console`; its return value."""
    from kfp import components, local

    (work / "workspace").mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "outputs"),
               workspace_root=str(work / "workspace"), raise_on_error=True)
    pipeline = components.load_component_from_file(str(path))
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        return pipeline(**arguments).output
