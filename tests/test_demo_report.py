"""The run report: JSON from a journal, the HTML page's sections, and the demo console's progress lines."""

from __future__ import annotations

import io
import re

from tqdm import tqdm

from simplear.demo.console import ProgressConsole
from simplear.platform.run_progress import progress_of
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


def tqdm_lines(total: int, upto: int, desc: str | None = None) -> list[str]:
    """The log lines a real tqdm bar leaves in a rank's log ('\\r' redraws read as lines), stopped at `upto`."""
    stream = io.StringIO()
    with tqdm(total=total, desc=desc, file=stream, mininterval=0, miniters=1) as bar:
        for _ in range(upto):
            bar.update(1)
        stream.seek(0)
        return [line for line in stream.read().replace("\r", "\n").splitlines() if line.strip()]


def test_progress_is_the_main_bar_and_the_last_loss_or_reward() -> None:
    """The trainer's bar gives step of total and ETA, its log dicts the loss (GRPO: reward); loading and saving bars
    and train_loss do not count."""
    lines = [*tqdm_lines(600, 120), "{'loss': '2.31', 'grad_norm': '1.2', 'learning_rate': '1e-4', 'epoch': '0.2'}",
             *tqdm_lines(1, 1, "Writing model shards"), "{'train_loss': '9.9'}"]
    progress = progress_of(lines)
    assert (progress.done, progress.total, progress.metric, progress.value) == (120, 600, "loss", 2.31)
    assert re.fullmatch(r"120/600 \(20%\), loss 2\.310, ETA \d\d:\d\d", progress.describe())
    grpo = progress_of([*tqdm_lines(64, 64), "{'reward': 0.62, 'reward_std': 0.2}"])
    assert grpo.describe() == "64/64 (100%), reward 0.620"
    assert progress_of(["loading the model"]).describe() == ""


class Terminal(io.StringIO):
    """A terminal: what is written, and whether it is a TTY."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        """As told."""
        return self.tty


def test_console_shows_the_running_stage_on_one_updating_line() -> None:
    """On a terminal each bar update rewrites one line (carriage return, erase) and a progress message replaces it;
    without one, the status is a plain line at most every STATUS_EVERY_S seconds."""
    terminal = Terminal(tty=True)
    console = ProgressConsole(io.StringIO(), terminal)
    for line in tqdm_lines(50, 10):
        console.write(f"      pretrain-1a2b3c4d | {line}\n")  # as kfp.local indents the step's output
    console.write("    [simplear] pretrain: done in 61 s\n")
    redraws = terminal.getvalue().split("\r\x1b[K")
    assert len(redraws) >= 11 and re.fullmatch(r"\[\d\d:\d\d\] pretrain: 10/50 \(20%\), ETA \d\d:\d\d", redraws[-2])
    assert re.fullmatch(r"\[\d\d:\d\d\] pretrain: done in 61 s\n", redraws[-1])
    log_file = Terminal(tty=False)
    console = ProgressConsole(io.StringIO(), log_file)
    for line in tqdm_lines(50, 10):
        console.write(f"  sft-1a2b3c4d | {line}\n")
    shown = log_file.getvalue().splitlines()
    assert len(shown) == 1 and re.fullmatch(r"\[\d\d:\d\d\] sft: 0/50 \(0%\)", shown[0])
    assert "\r" not in log_file.getvalue()
