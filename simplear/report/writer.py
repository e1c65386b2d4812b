"""Write a run's report from its journal into `<root>/report`: report.json, report.html and the reward curve PNG."""

from __future__ import annotations

import json

from simplear.report.grids import chosen_prompts, stage_grids
from simplear.report.page import render_report
from simplear.report.summary import build_report, read_journal
from simplear.store import Store, join

REPORT_DIR = "report"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
REWARD_CURVE_PNG = "reward_curve.png"


def write_report(store: Store, root: str) -> str:
    """Build the report of the run under `root`, write its files (HTML last) and return their folder's URI."""
    entries = read_journal(store, root)
    report = build_report(entries)
    outputs = {entry["evaluates"]: entry["output"] for entry in entries if entry["stage"] == "evaluate"}
    evaluations = {stage: outputs[stage] for stage in report["stages"] if stage in outputs}
    folder = join(root, REPORT_DIR)
    prompts, grids = [], []
    if evaluations:
        chosen = chosen_prompts(store, next(iter(evaluations.values())), report["evaluation"]["prompts"])
        prompts = [metadata for _, metadata in chosen]
        grids = stage_grids(store, evaluations, [index for index, _ in chosen])
    curve_uri = next((entry["reward_curve_png"] for entry in entries if entry["stage"] == "grpo"), None)
    curve = store.read(curve_uri) if curve_uri else None
    if curve is not None:
        store.write(join(folder, REWARD_CURVE_PNG), curve)
    store.write(join(folder, REPORT_JSON), (json.dumps(report, indent=2) + "\n").encode())
    store.write(join(folder, REPORT_HTML), render_report(report, entries, prompts, grids, curve).encode())
    return folder
