"""The run report: JSON from a journal, the HTML page's sections, and the demo console's progress lines."""

from __future__ import annotations

import io
import re

from simplear.demo.console import ProgressConsole
from simplear.report.grids import StageGrids
from simplear.report.page import render_report
from simplear.report.summary import build_report

TAGS = {"single_object": 0.5, "colors": 0.25}


def journal() -> list[dict]:
    """A lifecycle run's journal entries, in the order its steps finished."""
    def at(second: int) -> str:
        return f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}+00:00"

    return [
        {"step": "plan", "stage": "plan", "started": at(0), "finished": at(1)},
        {"step": "shapes-pretrain", "stage": "data", "seconds": 4.0, "finished": at(5)},
        {"step": "shapes-sft", "stage": "data", "seconds": 2.0, "finished": at(7)},
        {"step": "tokenize-pretrain", "stage": "tokenize", "seconds": 3.0, "finished": at(10)},
        {"step": "pretrain", "stage": "pretrain", "seconds": 60.0, "steps": 600, "finished": at(70)},
        {"step": "evaluate-pretrain", "stage": "evaluate", "evaluates": "pretrain", "seconds": 5.0, "finished": at(75),
         "per_tag": TAGS, "overall": 0.375, "prompts": 2, "images_per_prompt": 4,
         "sampling": {"cfg_scale": 5.0, "negative_prompt": "", "seed": 1000}, "output": "/eval/pretrain"},
        {"step": "grpo", "stage": "grpo", "seconds": 30.0, "finished": at(105), "rollout": "in_process",
         "reward_curve": [[1, 0.5], [2, 0.75]], "reward_curve_png": "/grpo/logs/reward_curve.png"},
        {"step": "serve", "stage": "serve", "seconds": 6.0, "finished": at(111),
         "served": {"backend": "local", "width": 64, "height": 64, "correct": True}},
        {"step": "evaluate-grpo", "stage": "evaluate", "evaluates": "grpo", "seconds": 5.0, "finished": at(120),
         "per_tag": {"single_object": 1.0, "colors": 0.5}, "overall": 0.75, "prompts": 2, "images_per_prompt": 4,
         "sampling": {"cfg_scale": 5.0, "negative_prompt": "", "seed": 1000}, "output": "/eval/grpo"},
    ]


def test_report_json_has_minutes_stages_in_lifecycle_order_scores_and_serving() -> None:
    """Seconds summed per stage, evaluation scores on the stage they evaluate, minutes from plan to last step."""
    report = build_report(journal())
    assert report["minutes"] == 2.0
    assert list(report["stages"]) == ["data", "tokenize", "pretrain", "grpo"]
    assert report["stages"]["data"] == {"seconds": 6.0}
    assert report["stages"]["pretrain"] == {"seconds": 60.0, "steps": 600, "eval_seconds": 5.0, **TAGS,
                                            "overall": 0.375}
    assert report["stages"]["grpo"]["reward_curve"] == [[1, 0.5], [2, 0.75]]
    assert report["stages"]["grpo"]["overall"] == 0.75
    assert report["served"] == {"seconds": 6.0, "backend": "local", "width": 64, "height": 64, "correct": True}
    assert report["evaluation"]["prompts"] == 2


def test_report_page_shows_scores_grids_reward_curve_timings_and_serving() -> None:
    """One scores row and one image row per evaluated stage, the curve, every timed step, the serving check."""
    report = build_report(journal())
    prompts = [{"tag": "single_object", "prompt": "a photo of a circle"}, {"tag": "colors", "prompt": "a red cross"}]
    grids = [StageGrids("pretrain", [b"png-a", b"png-b"]), StageGrids("grpo", [b"png-c", b"png-d"])]
    page = render_report(report, journal(), prompts, grids, b"curve")
    assert re.search(r"<tr><td>pretrain</td><td>0\.500</td><td>0\.250</td><td>0\.375</td></tr>", page)
    assert re.search(r"<tr><td>grpo</td><td>1\.000</td><td>0\.500</td><td>0\.750</td></tr>", page)
    assert page.count('class="grid"') == 4 and "a photo of a circle" in page
    assert 'alt="GRPO reward per step"' in page
    assert all(f"<td>{step}</td>" in page for step in ("shapes-pretrain", "pretrain", "evaluate-grpo", "serve"))
    assert "<td>correct</td><td>True</td>" in page and "<td>seconds</td><td>6.00</td>" in page


def test_console_logs_everything_and_shows_progress_and_failures() -> None:
    """Progress lines and failed tasks reach the terminal, stamped; every line reaches the log."""
    log, terminal = io.StringIO(), io.StringIO()
    console = ProgressConsole(log, terminal)
    console.write("    [simplear] pretrain: done in 61 s\n    step 10 loss 0.3\n")
    console.write("ERROR - Task \x1b[96m'sft'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m\n")
    assert log.getvalue().count("\n") == 3
    shown = terminal.getvalue().splitlines()
    assert [re.sub(r"^\[\d\d:\d\d\] ", "", line) for line in shown] == ["pretrain: done in 61 s", "task sft FAILED"]
