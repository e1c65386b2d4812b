"""A run's report as one self-contained HTML page (images inline), the page the Pipelines UI shows."""

from __future__ import annotations

import base64
from html import escape

from simplear.report.grids import StageGrids

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 24px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.images { text-align: center; }
img.grid { width: 192px; image-rendering: pixelated; }
th.prompt { max-width: 192px; font-weight: normal; font-size: 12px; text-align: center; }
"""


def _png(data: bytes, css_class: str = "", alt: str = "") -> str:
    """An inline PNG image."""
    encoded = base64.b64encode(data).decode()
    return f'<img class="{css_class}" alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def _scores_table(stages: dict[str, dict]) -> str:
    """Per-tag and overall score of every evaluated stage."""
    scored = {name: stage for name, stage in stages.items() if "overall" in stage}
    tags = list(dict.fromkeys(key for stage in scored.values() for key in stage if key not in NOT_TAGS))
    head = "".join(f"<th>{escape(tag)}</th>" for tag in [*tags, "overall"])
    rows = "".join(
        f"<tr><td>{escape(name)}</td>" + "".join(f"<td>{stage.get(tag, float('nan')):.3f}</td>"
                                                  for tag in [*tags, "overall"]) + "</tr>"
        for name, stage in scored.items()
    )
    return f"<table><tr><th>stage</th>{head}</tr>{rows}</table>"


NOT_TAGS = {"seconds", "steps", "eval_seconds", "overall", "rollout", "reward_curve"}


def _grids_table(prompts: list[dict], grids: list[StageGrids]) -> str:
    """Rows of stages, columns of prompts: every stage's samples of the same prompts with the same seeds."""
    head = "".join(f'<th class="prompt">{escape(p["tag"])}<br>{escape(p["prompt"])}</th>' for p in prompts)
    rows = "".join(
        f"<tr><td>{escape(grid.stage)}</td>"
        + "".join(f'<td class="images">{_png(png, "grid", grid.stage)}</td>' for png in grid.pngs) + "</tr>"
        for grid in grids
    )
    return f"<table><tr><th>stage</th>{head}</tr>{rows}</table>"


def _timings_table(steps: list[dict], minutes: float) -> str:
    """Seconds of every step in the order they finished, and the run's total."""
    rows = "".join(f"<tr><td>{escape(step['step'])}</td><td>{step['seconds']:.1f}</td></tr>"
                   for step in steps if "seconds" in step)
    return f"<table><tr><th>step</th><th>seconds</th></tr>{rows}<tr><th>run</th><th>{minutes:.1f} min</th></tr></table>"


def _cell(value: object) -> str:
    """A table cell's text: floats to two decimals, anything else as it prints."""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _served_table(served: dict) -> str:
    """What the serving check asked and got."""
    rows = "".join(f"<tr><td>{escape(key)}</td><td>{escape(_cell(value))}</td></tr>" for key, value in served.items())
    return f"<table>{rows}</table>"


def _evaluation_text(report: dict) -> str:
    """How every stage was evaluated: prompts, images per prompt, CFG, unconditional prompt and seed."""
    evaluation = report.get("evaluation")
    if not evaluation:
        return "No evaluation ran."
    sampling = evaluation["sampling"]
    negative = repr(sampling["negative_prompt"]) if sampling["negative_prompt"] else "the CFG-dropped prompt"
    if sampling.get("protocol") == "simplear":
        negative = "upstream's negative prompt, each prompt behind a random training prefix"
    return (f"Every stage evaluated on the same {evaluation['prompts']} held-out prompts x "
            f"{evaluation['images_per_prompt']} images: CFG {sampling['cfg_scale']:g} against {negative}, seeds from "
            f"{sampling['seed']}.")


def render_report(report: dict, steps: list[dict], prompts: list[dict], grids: list[StageGrids],
                  reward_curve_png: bytes | None) -> str:
    """The page: scores per stage, image grids per stage, the GRPO reward curve, step timings, the serving check."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>SimpleAR run report</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>SimpleAR run report</h1><p>{report['minutes']:.1f} minutes. {escape(_evaluation_text(report))}</p>",
        "<h2>Scores per stage (exact shapes checker, GenEval tags)</h2>", _scores_table(report["stages"]),
        "<h2>Images per stage on the same prompts and seeds</h2>", _grids_table(prompts, grids),
    ]
    if reward_curve_png is not None:
        parts += ["<h2>GRPO reward curve</h2>", _png(reward_curve_png, alt="GRPO reward per step")]
    parts += ["<h2>Timings</h2>", _timings_table(steps, report["minutes"])]
    if report.get("served"):
        parts += ["<h2>Serving check (one v1 predict request)</h2>", _served_table(report["served"])]
    parts.append("</body></html>")
    return "\n".join(parts)
