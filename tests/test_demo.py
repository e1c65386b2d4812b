"""`simplear demo --quick` end to end: the compiled lifecycle pipeline through kfp.local, stages as local runs.

Two real runs: on SeaweedFS S3 (the cluster's store code path) with in-process GRPO rollouts, and on a local
directory with GRPO rollouts from a rollout server; then the entry-point pipelines start from the latter's outputs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import components, local
from PIL import Image

from simplear.compiled_pipelines import compiled_pipeline
from simplear.config import SHAPES_RECIPES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning:kfp.local.orchestrator.task_executor"),
              pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")]
QUICK = SHAPES_RECIPES["quick"]
TAGS = {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
STAGES = ("pretrain", "sft", "grpo")


def run_demo(out: Path, *flags: str) -> subprocess.CompletedProcess:
    """`simplear demo --quick` into out, its stage runs recorded under out/../jobs-<name>."""
    command = [sys.executable, "-m", "simplear.cli", "demo", "--quick", "--out", str(out), "--runs-dir",
               str(out.parent / f"jobs-{out.name}"), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def s3_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The quick demo on embedded SeaweedFS: its run directory and what it printed."""
    out = tmp_path_factory.mktemp("demo") / "s3"
    return out, run_demo(out, "--embedded-s3").stdout


@pytest.fixture(scope="module")
def server_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick demo on a local store, demo seed 1, with GRPO rollouts from a rollout server: its run directory."""
    out = tmp_path_factory.mktemp("demo") / "local"
    run_demo(out, "--rollout-server", "--seed", "1")
    return out


def report(out: Path) -> dict:
    """The run's report.json."""
    return json.loads((out / "report.json").read_text())


def test_quick_demo_reports_every_stage_with_timings_and_per_tag_scores(s3_demo: tuple[Path, str]) -> None:
    """Within 5 minutes; data and tokenize timed; pretrain, SFT and GRPO timed and scored on every tag."""
    out, _ = s3_demo
    result = report(out)
    assert 0 < result["minutes"] <= 5
    assert list(result["stages"]) == ["data", "tokenize", *STAGES]
    for name in STAGES:
        stage = result["stages"][name]
        assert stage["seconds"] > 0 and stage["eval_seconds"] > 0, name
        assert set(stage) >= TAGS | {"overall"}, name
        assert all(0.0 <= stage[tag] <= 1.0 for tag in TAGS), name
    sampling = {"protocol": "fixed", "cfg_scale": QUICK.cfg_scale, "negative_prompt": "", "seed": 1000}
    assert result["evaluation"] == {"prompts": 6, "images_per_prompt": QUICK.eval_images_per_prompt,
                                    "sampling": sampling}
    assert len(result["stages"]["grpo"]["reward_curve"]) == QUICK.grpo_steps


def test_quick_demo_served_the_final_model_and_checked_one_image(s3_demo: tuple[Path, str]) -> None:
    """`simplear serve` on the GRPO model in the store answered one v1 predict with a 64 px image."""
    served = report(s3_demo[0])["served"]
    assert served["backend"] == "local" and served["url"].startswith("http://127.0.0.1:")
    assert served["model"].startswith("s3://simplear-demo/") and served["model"].endswith("/models/grpo/final")
    assert (served["width"], served["height"]) == (64, 64) and served["seed"] == 1000
    assert isinstance(served["correct"], bool)


def test_quick_demo_page_has_grids_per_stage_on_the_same_prompts_and_the_reward_curve(
        s3_demo: tuple[Path, str]) -> None:
    """One row of six prompt grids per stage, the GRPO reward curve (also as a PNG), the timings."""
    out, _ = s3_demo
    page = (out / "report.html").read_text()
    for name in STAGES:
        assert page.count(f'alt="{name}"') == 6, name
    grid_rows = re.findall(r'class="grid" alt="(\w+)"', page)
    assert list(dict.fromkeys(grid_rows)) == list(STAGES), "grid rows in lifecycle order, whatever finished first"
    assert 'alt="GRPO reward per step"' in page and "<h2>Timings</h2>" in page
    with Image.open(out / "reward_curve.png") as curve:
        assert curve.format == "PNG" and curve.width > 100


def test_quick_demo_ran_every_stage_as_a_local_run_and_showed_progress(s3_demo: tuple[Path, str]) -> None:
    """`simplear jobs list` shows each stage's run succeeded; the terminal showed stage names and timings."""
    out, printed = s3_demo
    jobs = subprocess.run([sys.executable, "-m", "simplear.cli", "jobs", "--runs-dir", str(out.parent / "jobs-s3"),
                           "list"], capture_output=True, text=True, check=True).stdout
    for stage, count in (("shapes", 2), ("tokenize", 2), ("pretrain", 1), ("sft", 1), ("grpo", 1), ("evaluate", 3)):
        assert len(re.findall(rf"\s{stage}\s+Succeeded", jobs)) == count, (stage, jobs)
    for name in ("pretrain", "sft", "grpo", "evaluate-grpo"):
        assert re.search(rf"\[\d\d:\d\d\] {name}: done in \d+ s", printed), name
    assert "serve: v1 predict answered a 64x64 image" in printed


def test_quick_demo_grpo_can_take_rollouts_from_a_rollout_server(server_demo: Path) -> None:
    """With --rollout-server the GRPO run started a rollout server beside the trainer and trained from it."""
    result = report(server_demo)
    assert result["stages"]["grpo"]["rollout"] == "server"
    (grpo_run,) = (server_demo.parent / "jobs-local").glob("grpo-*")
    assert "rollout-server" in json.loads((grpo_run / "run.json").read_text())["rollout_command"]
    assert (grpo_run / "rollout.log").stat().st_size > 0
    assert len(result["stages"]["grpo"]["reward_curve"]) == QUICK.grpo_steps


def test_a_demo_seed_reaches_the_data_the_models_the_evaluation_and_the_serving_check(server_demo: Path) -> None:
    """--seed 1 ran the recipe's seeded(1): its datasets, pretrain and SFT init, evaluation and serving seeds."""
    seeded = QUICK.seeded(1)
    result = report(server_demo)
    assert result["evaluation"]["sampling"]["seed"] == seeded.seed and result["served"]["seed"] == seeded.seed
    runs = server_demo.parent / "jobs-local"
    for stage, field in (("shapes-pretrain", "pretrain_data_seed"), ("shapes-sft", "sft_data_seed")):
        (run,) = runs.glob(f"{stage}-*")
        command = json.loads((run / "run.json").read_text())["spec"]["args"]
        assert command[command.index("--seed") + 1] == str(getattr(seeded, field)), stage
    for stage in ("pretrain", "sft"):
        (run,) = runs.glob(f"{stage}-*")
        command = json.loads((run / "run.json").read_text())["spec"]["args"]
        assert json.loads(command[command.index("--config-json") + 1])["seed"] == seeded.seed, stage


def run_entry_point(name: str, arguments: dict, work: Path) -> str:
    """Run a compiled entry-point pipeline through kfp.local with the local backend; its report folder."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "kfp"),
               workspace_root=str(work), raise_on_error=True)
    pipeline = components.load_component_from_file(str(compiled_pipeline(name)))
    common = {"backend": "local", "runs_dir": str(work / "jobs"), "procs_per_node": 1, "eval_images_per_prompt": 1}
    return pipeline(**common, **arguments).output


def test_entry_points_start_from_existing_checkpoints_and_datasets(server_demo: Path, tmp_path: Path) -> None:
    """SFT-only from the demo's pretrain model and tokens; evaluate-and-deploy from its GRPO model."""
    store = server_demo / "store"
    run = store / server_demo.name
    held_out = str(run / "data" / "pretrain")
    folder = run_entry_point("simplear-sft", {
        "store_root": str(store), "run_tag": "sft-only", "init_model_uri": str(run / "models" / "pretrain" / "final"),
        "sft_tokens_uri": str(run / "tokens" / "sft"), "eval_data_uri": held_out, "sft_steps": 2, "batch_size": 4,
    }, tmp_path)
    assert list(json.loads(Path(folder, "report.json").read_text())["stages"]) == ["init", "sft"]
    assert (store / "sft-only" / "models" / "sft" / "final" / "manifest.json").is_file()
    folder = run_entry_point("simplear-evaluate-deploy", {
        "store_root": str(store), "run_tag": "serve-only", "model_uri": str(run / "models" / "grpo" / "final"),
        "eval_data_uri": held_out, "model_label": "grpo",
    }, tmp_path)
    result = json.loads(Path(folder, "report.json").read_text())
    assert set(result["stages"]["grpo"]) >= TAGS and result["served"]["width"] == 64
