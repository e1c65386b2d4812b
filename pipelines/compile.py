"""Compile every pipeline into the package (simplear/compiled_pipelines/<name>.yaml, package data) and copy them
where the Helm chart ships them from.

Run from the repository root: `python -m pipelines.compile`.
"""

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from kfp import compiler

from pipelines.evaluate_deploy import evaluate_deploy
from pipelines.grpo_only import grpo_only
from pipelines.lifecycle import lifecycle
from pipelines.pretrain_only import pretrain_only
from pipelines.sft_only import sft_only
from pipelines.tokenize_only import tokenize_only
from pipelines.train import train_on_user_data
from simplear.compiled_pipelines import COMPILED_DIR

REPOSITORY = Path(__file__).resolve().parents[1]
COMPILED = COMPILED_DIR
CHART_PIPELINES = REPOSITORY / "helm" / "simplear" / "files" / "pipelines"
PIPELINES: dict[str, Callable] = {
    "simplear-lifecycle": lifecycle,
    "simplear-train": train_on_user_data,
    "simplear-tokenize": tokenize_only,
    "simplear-pretrain": pretrain_only,
    "simplear-sft": sft_only,
    "simplear-grpo": grpo_only,
    "simplear-evaluate-deploy": evaluate_deploy,
}


def compile_all(directory: Path) -> list[Path]:
    """Write every pipeline's YAML into directory; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pipeline in PIPELINES.items():
        path = directory / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    return written


def main() -> int:
    """Compile into simplear/compiled_pipelines and copy each file into the chart's files/pipelines."""
    for path in compile_all(COMPILED):
        shutil.copyfile(path, CHART_PIPELINES / path.name)
        print(f"{path.relative_to(REPOSITORY)} -> {(CHART_PIPELINES / path.name).relative_to(REPOSITORY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
