"""`simplear demo`: the lifecycle pipeline through kfp.local with the LocalLauncher, the tiny preset and shapes data.

The same compiled pipeline the chart registers with Kubeflow Pipelines runs here with `backend=local`: every stage is
a LocalLauncher run (visible to `simplear jobs`), every artifact goes to the store, and the report lands in the run
directory. `--quick` proves the wiring in about two minutes; the full run takes about 15 on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from simplear.compiled_pipelines import compiled_pipeline
from simplear.config import SHAPES_RECIPES
from simplear.demo.console import ANSI, ProgressConsole
from simplear.demo.demo_store import demo_store
from simplear.demo.local_pipeline import run_local_pipeline
from simplear.platform.local_runs import RUNS_DIR_VARIABLE, default_runs_dir
from simplear.report.writer import REPORT_HTML, REPORT_JSON, REWARD_CURVE_PNG
from simplear.store import Store, StoreError, join

PIPELINE = "simplear-lifecycle"
PIPELINE_LOG = "pipeline.log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear demo`."""
    parser.add_argument("--quick", action="store_true",
                        help="tiny step counts and few prompts (about 2 minutes): proves the wiring, not the quality")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", help="store root for data and checkpoints: a directory, or s3://bucket/prefix "
                                       "reached through SIMPLEAR_S3_ENDPOINT and AWS_* (default: <out>/store)")
    where.add_argument("--embedded-s3", action="store_true",
                       help="start SeaweedFS S3 on 127.0.0.1 for the run (the code path of MinIO on the cluster)")
    parser.add_argument("--runs-dir", type=Path,
                        help=f"where stage runs are recorded for `simplear jobs` (default ${RUNS_DIR_VARIABLE} "
                             "or ~/.simplear/runs)")
    parser.add_argument("--out", type=Path, help="run directory: report, pipeline log (default runs/demo/<UTC time>)")
    parser.add_argument("--rollout-server", action="store_true",
                        help="GRPO rollouts from a rollout server process (torch engine) instead of in the trainer")
    parser.add_argument("--seed", type=int, default=0,
                        help="moves every data, init, evaluation and GRPO seed of the recipe (0: the recipe as it is)")
    parser.add_argument("--verbose", action="store_true", help="show every log line, not only progress")


def pipeline_arguments(args: argparse.Namespace, store_root: str, run_tag: str) -> dict:
    """The lifecycle pipeline's arguments: local backend, this run's store and runs dir, the chosen recipe."""
    recipe = SHAPES_RECIPES["quick" if args.quick else "full"].seeded(args.seed)
    return {
        "backend": "local", "store_root": store_root, "run_tag": run_tag,
        "runs_dir": str((args.runs_dir or default_runs_dir()).absolute()),
        "rollout": "server" if args.rollout_server else "in_process", "rollout_engine": "torch",
        **recipe.model_dump(),
    }


def copy_report(folder: str, out: Path) -> None:
    """Copy the report's files from the store into the run directory."""
    store = Store()
    for name in (REPORT_JSON, REWARD_CURVE_PNG, REPORT_HTML):
        if store.exists(join(folder, name)):
            (out / name).write_bytes(store.read(join(folder, name)))


def score_line(out: Path) -> str:
    """Each evaluated stage's overall score from the copied report.json."""
    stages = json.loads((out / REPORT_JSON).read_text())["stages"]
    return ", ".join(f"{name} {stage['overall']:.3f}" for name, stage in stages.items() if "overall" in stage)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline, copy its report into the run directory; 0 on success, 1 when a step failed."""
    started = time.monotonic()
    if args.seed < 0:
        raise SystemExit(f"simplear demo: --seed must be 0 or more, not {args.seed}")
    out = (args.out or Path("runs/demo") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with (out / PIPELINE_LOG).open("a") as log:
        console = ProgressConsole(log, sys.stdout, args.verbose)
        try:
            with demo_store(out, args.store, args.embedded_s3) as store_root:
                arguments = pipeline_arguments(args, store_root, out.name)
                console.say(f"simplear demo ({'quick' if args.quick else 'full'}): store {store_root}, stage runs "
                            f"in {arguments['runs_dir']}, log {out / PIPELINE_LOG}")
                folder = run_local_pipeline(compiled_pipeline(PIPELINE), arguments, out / "kfp", console)
                copy_report(folder, out)
        except (RuntimeError, ValueError, FileNotFoundError, StoreError) as exc:
            console.say(f"FAILED: {ANSI.sub('', str(exc)).splitlines()[0]} (full log: {out / PIPELINE_LOG})")
            return 1
    console.say(f"done in {(time.monotonic() - started) / 60:.1f} min; overall score {score_line(out)}; "
                f"report {out / REPORT_HTML}")
    return 0
