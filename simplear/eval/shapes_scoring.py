"""Score a GenEval-layout output of the shapes benchmark with its exact scorer, GenEval-style."""

from __future__ import annotations

import json
from dataclasses import asdict

from simplear.data.shapes import BenchmarkSummary, score_image, summarize
from simplear.eval.geneval_layout import read_samples
from simplear.store import Store, join

RESULTS = "results.jsonl"
SUMMARY = "summary.json"


def score_shapes_run(store: Store, root: str, prompts: list[dict]) -> BenchmarkSummary:
    """Write `results.jsonl` (one line per image, as GenEval's evaluate_images) and `summary.json`; return it."""
    scores, lines = [], []
    for index, metadata in enumerate(prompts):
        for j, image in enumerate(read_samples(store, root, index)):
            score = score_image(image, metadata)
            scores.append(score)
            lines.append({
                "filename": f"{index:05d}/samples/{j:04d}.png", "tag": score.tag,
                "prompt": metadata["prompt"], "correct": score.correct, "fraction": score.fraction,
                "reason": score.reason, "metadata": metadata,
            })
    summary = summarize(scores)
    store.write(join(root, RESULTS), "".join(json.dumps(line) + "\n" for line in lines).encode())
    store.write(join(root, SUMMARY), json.dumps(asdict(summary), indent=2).encode())
    return summary
