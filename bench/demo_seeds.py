"""The default `simplear demo` over several seeds: minutes and per-tag scores of every stage, the worst seed against
the bars the demo must clear (SFT overall >= 0.40, GRPO overall >= 0.50, every GRPO tag >= 0.20, <= 15 minutes).

Runs `simplear demo --seed S --out <work>/seedS` for each seed, one after the other (each wants both cores), and
writes `bench/results/demo.json`: the first seed's report.json (`minutes`, `stages`, `served`, `evaluation`) plus
`"seeds": [{"seed", "minutes", "stages"}, ...]` and `"worst"`; the first seed's report page and reward curve are copied
beside it. It replaces no baseline: the ratio it prints is the worst seed's GRPO overall over its bar.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_output import emit

from simplear.report.writer import REPORT_HTML, REPORT_JSON, REWARD_CURVE_PNG

BARS = {"sft": 0.40, "grpo": 0.50, "grpo_tag": 0.20, "minutes": 15.0}


def run_demo(seed: int, out: Path) -> dict:
    """One full demo run; its report.json."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "simplear.cli", "demo", "--seed", str(seed), "--out", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"simplear demo --seed {seed} failed (log {out / 'pipeline.log'}):\n{done.stderr[-2000:]}")
    return json.loads((out / REPORT_JSON).read_text())


def worst_case(runs: list[dict]) -> dict:
    """The worst seed's figures: minutes, SFT and GRPO overall, the lowest GRPO tag, and which bars they clear."""
    grpo_tags = [score for run in runs for tag, score in run["stages"]["grpo"].items()
                 if isinstance(score, float) and tag not in ("seconds", "eval_seconds", "overall")]
    worst = {"minutes": max(run["minutes"] for run in runs),
             "sft": min(run["stages"]["sft"]["overall"] for run in runs),
             "grpo": min(run["stages"]["grpo"]["overall"] for run in runs), "grpo_tag": min(grpo_tags)}
    worst["clears"] = {bar: (worst[bar] <= limit if bar == "minutes" else worst[bar] >= limit)
                       for bar, limit in BARS.items()}
    return worst


def main() -> None:
    """Every seed's demo; write and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/demo_seeds"))
    parser.add_argument("--out", default="bench/results/demo.json")
    args = parser.parse_args()
    reports = []
    for seed in args.seeds:
        reports.append(run_demo(seed, args.work / f"seed{seed}"))
        print(json.dumps({"seed": seed, "minutes": reports[-1]["minutes"],
                          "overall": {name: stage.get("overall") for name, stage in reports[-1]["stages"].items()}}),
              file=sys.stderr, flush=True)
    runs = [{"seed": seed, "minutes": report["minutes"], "stages": report["stages"]}
            for seed, report in zip(args.seeds, reports, strict=True)]
    worst = worst_case(runs)
    summary = {**reports[0], "seeds": runs, "worst": worst, "ratio_worst_grpo_to_bar": worst["grpo"] / BARS["grpo"]}
    results = Path(args.out).parent
    results.mkdir(parents=True, exist_ok=True)
    for name, copy in ((REPORT_HTML, "demo_report.html"), (REWARD_CURVE_PNG, "demo_reward_curve.png")):
        if (args.work / f"seed{args.seeds[0]}" / name).exists():
            shutil.copyfile(args.work / f"seed{args.seeds[0]}" / name, results / copy)
    emit(summary, args.out)


if __name__ == "__main__":
    main()
