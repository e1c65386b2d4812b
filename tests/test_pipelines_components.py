"""Components run for real through kfp.local: a stage component's run goes through the LocalLauncher."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import chart_platform_config, objects, one
from kfp import dsl, local

from simplear.s3_server import EmbeddedS3
from simplear.store import Store

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # pipelines/ is a folder of the repository, not an installed package

from pipelines.components.data import shapes_data  # noqa: E402
from pipelines.components.deployment import deploy  # noqa: E402
from pipelines.components.evaluation import evaluate  # noqa: E402
from pipelines.components.existing import existing_model  # noqa: E402
from pipelines.components.plan import plan_run  # noqa: E402
from pipelines.components.stage_support import platform_config  # noqa: E402
from pipelines.components.training import pretrain  # noqa: E402
from simplear.compiled_pipelines import COMPILED_DIR  # noqa: E402
from simplear.config import get_preset  # noqa: E402
from simplear.model.simplear_lm import SimpleARModel  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:kfp.local.orchestrator.task_executor"),
              pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")]


@pytest.fixture
def kfp_local(tmp_path: Path) -> Path:
    """kfp.local with the subprocess runner in this environment (nothing pip-installed); its root."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               workspace_root=str(tmp_path), raise_on_error=True)
    return tmp_path


def jobs_list(runs_dir: Path) -> str:
    """What `simplear jobs list` prints for a runs directory."""
    done = subprocess.run([sys.executable, "-m", "simplear.cli", "jobs", "--runs-dir", str(runs_dir), "list"],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_a_stage_component_runs_its_stage_as_a_local_run_that_simplear_jobs_lists(kfp_local: Path) -> None:
    """shapes_data with the local backend: a LocalLauncher run under runs_dir, its dataset in the store."""
    runs, root = kfp_local / "runs", kfp_local / "store" / "run"
    task = shapes_data(backend="local", runs_dir=str(runs), root=str(root), data_root=str(root), run_id="7",
                       name="unit", images=12, seed=3,
                       eval_per_tag=1, timeout_minutes=5)
    data = task.outputs["data"]
    assert data.metadata["uri"] == str(root / "data" / "unit")
    assert len((root / "data" / "unit" / "meta.jsonl").read_text().splitlines()) == 12
    assert data.metadata["eval_prompts"] == str(root / "data" / "unit" / "evaluation_metadata.jsonl")
    assert json.loads(Path(data.path).read_text())["uri"] == data.metadata["uri"]
    assert re.search(r"shapes-unit-[0-9a-f]{8}\s+shapes\s+Succeeded", jobs_list(runs))
    journal = json.loads((root / "journal" / "shapes-unit.json").read_text())
    assert journal["stage"] == "data" and journal["seconds"] > 0 and journal["output"] == data.metadata["uri"]


def test_plan_puts_the_run_under_the_store_root_and_refuses_none_locally(kfp_local: Path) -> None:
    """<store_root>/<run_tag> for data and the rest, with the journal's first entry; local needs a store root."""
    outputs = plan_run(backend="local", store_root=str(kfp_local / "store"), run_tag="tag", run_id="1").outputs
    assert outputs["root"] == outputs["data_root"] == str(kfp_local / "store" / "tag")
    assert json.loads((kfp_local / "store" / "tag" / "journal" / "plan.json").read_text())["stage"] == "plan"
    with pytest.raises(RuntimeError, match="plan-run"):
        plan_run(backend="local", store_root="", run_tag="tag", run_id="1")


def test_cluster_runs_keep_data_in_the_data_bucket_and_the_rest_in_the_checkpoint_bucket(
        s3_server: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the cluster (no store_root) datasets and token shards go to the chart's data bucket, checkpoints,
    evaluations, journal and report to its checkpoint bucket; the lifecycle wires the folders that way."""
    config = chart_platform_config("default").model_copy(update={
        "store_endpoint": s3_server.endpoint, "data_bucket": f"data-{secrets.token_hex(4)}",
        "checkpoint_bucket": f"ckpt-{secrets.token_hex(4)}"})
    for bucket in (config.data_bucket, config.checkpoint_bucket):
        s3_server.create_bucket(bucket)
    mounted = tmp_path / "platform.json"
    mounted.write_text(config.model_dump_json(by_alias=True))
    for name, value in {**s3_server.env(), "SIMPLEAR_PLATFORM_CONFIG": str(mounted)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SIMPLEAR_S3_ENDPOINT", raising=False)
    root, data_root = plan_run.python_func(backend="kubernetes", store_root="", run_tag="t1", run_id="1")
    assert (root, data_root) == (f"s3://{config.checkpoint_bucket}/pipelines/t1",
                                 f"s3://{config.data_bucket}/pipelines/t1")
    assert Store().exists(f"{root}/journal/plan.json")
    tasks = next(yaml.safe_load_all((COMPILED_DIR / "simplear-lifecycle.yaml").read_text()))[
        "root"]["dag"]["tasks"]
    for task, body in tasks.items():
        inputs = body.get("inputs", {}).get("parameters", {})
        if task.startswith(("shapes-data", "tokenize-data")):
            assert inputs["data_root"]["taskOutputParameter"] == {"outputParameterKey": "data_root",
                                                                  "producerTask": "plan-run"}, task
        if "root" in inputs:
            assert inputs["root"]["taskOutputParameter"] == {"outputParameterKey": "root",
                                                             "producerTask": "plan-run"}, task


def test_an_incomplete_checkpoint_is_refused_as_a_starting_point(kfp_local: Path) -> None:
    """A folder without manifest.json fails the step instead of training from a half-written model."""
    half = kfp_local / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="existing-model"):
        existing_model(backend="local", uri=str(half))


def test_a_training_component_refuses_a_bad_config_before_any_run_starts(
    kfp_local: Path, tmp_path_factory: pytest.TempPathFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """A training step builds its stage's TrainConfig and passes it as --config-json: a value the config refuses
    fails the step with pydantic's message, and no pretrain run is started."""
    outside = tmp_path_factory.mktemp("outside-workspace")
    runs, root = outside / "runs", outside / "store" / "run"

    def pretrain_sawtooth(runs_dir, root):  # noqa: ANN001 - kfp reads the real types set below
        data = shapes_data(backend="local", runs_dir=runs_dir, root=root, data_root=root, run_id="5", name="d",
                           images=4, seed=3, eval_per_tag=1, timeout_minutes=5).outputs["data"]
        pretrain(backend="local", runs_dir=runs_dir, root=root, run_id="5", preset="tiny", steps=4, batch_size=2,
                 learning_rate=1e-3, lr_schedule="sawtooth", weight_decay=0.0, adam_beta2=0.95, loss_on="codes",
                 prompt_prefixes="generation", procs_per_node=1, timeout_minutes=5, tokens=data)

    pretrain_sawtooth.__annotations__ = {"runs_dir": str, "root": str}
    with pytest.raises(RuntimeError, match="pretrain"):
        dsl.pipeline(pretrain_sawtooth)(runs_dir=str(runs), root=str(root))
    captured = capfd.readouterr()
    assert "lr_schedule" in captured.out + captured.err
    listed = jobs_list(runs)
    assert "shapes-d-" in listed and "pretrain" not in listed


def test_cluster_components_read_the_mounted_platform_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's platform.json parses as PlatformConfig and points the component's store at its endpoint."""
    mounted = tmp_path / "platform.json"
    mounted.write_text(one(objects("default"), "ConfigMap", "simplear-platform")["data"]["platform.json"])
    monkeypatch.setenv("SIMPLEAR_PLATFORM_CONFIG", str(mounted))
    monkeypatch.delenv("SIMPLEAR_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("SIMPLEAR_S3_SECURE", raising=False)
    config = platform_config()
    assert config.store_endpoint == "simplear-minio.ml-platform.svc:9000"
    assert config.checkpoint_bucket == "simplear-checkpoints"
    assert os.environ["SIMPLEAR_S3_ENDPOINT"] == config.store_endpoint
    assert os.environ["SIMPLEAR_S3_SECURE"] == "false"


def test_the_evaluation_component_runs_upstreams_protocol(
    kfp_local: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """protocol simplear: `simplear evaluate --protocol simplear` through the launcher, recorded as such.

    A pipeline run clears kfp.local's workspace when it ends, so the store and runs live outside it.
    """
    outside = tmp_path_factory.mktemp("outside-workspace")
    runs, root = outside / "runs", outside / "store" / "run"
    SimpleARModel.random_init(get_preset("tiny")).save(outside / "model")

    def evaluate_sft(model_uri, runs_dir, root):  # noqa: ANN001 - kfp reads the real types set below
        model = existing_model(backend="local", uri=model_uri).outputs["model"]
        data = shapes_data(backend="local", runs_dir=runs_dir, root=root, data_root=root, run_id="3",
                           name="held-out", images=4, seed=3, eval_per_tag=1, timeout_minutes=5).outputs["data"]
        evaluate(backend="local", runs_dir=runs_dir, root=root, run_id="3", stage="sft", protocol="simplear",
                 images_per_prompt=4, cfg_scale=5.0, negative_prompt="", seed=7, procs_per_node=1,
                 timeout_minutes=10, model=model, prompts=data)

    evaluate_sft.__annotations__ = {"model_uri": str, "runs_dir": str, "root": str}
    dsl.pipeline(evaluate_sft)(model_uri=str(outside / "model"), runs_dir=str(runs), root=str(root))
    journal = json.loads((root / "journal" / "evaluate-sft.json").read_text())
    assert journal["sampling"] == {"protocol": "simplear", "cfg_scale": 6.0, "negative_prompt": None, "seed": 7}
    folders = sorted((root / "eval" / "sft").glob("[0-9]*"))
    assert len(folders) == journal["prompts"] and all(len(list((f / "samples").iterdir())) == 4 for f in folders)
    assert re.search(r"evaluate-sft-[0-9a-f]{8}\s+evaluate\s+Succeeded", jobs_list(runs))


def test_the_deploy_component_serves_through_the_local_launcher(
    kfp_local: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """deploy with the local backend: LocalLauncher.deploy serves the model under the backend's default name on
    127.0.0.1, one v1 predict answers with an image of the checkpoint's resolution, and the server is gone after."""
    import urllib.error
    import urllib.request

    outside = tmp_path_factory.mktemp("outside-workspace")
    runs, root = outside / "runs", outside / "store" / "run"
    SimpleARModel.random_init(get_preset("tiny")).save(outside / "model")

    def serve_model(model_uri, runs_dir, root):  # noqa: ANN001 - kfp reads the real types set below
        model = existing_model(backend="local", uri=model_uri).outputs["model"]
        data = shapes_data(backend="local", runs_dir=runs_dir, root=root, data_root=root, run_id="5",
                           name="held-out", images=4, seed=3, eval_per_tag=1, timeout_minutes=5).outputs["data"]
        deploy(backend="local", runs_dir=runs_dir, root=root, run_id="5", model_name="", inference_service="",
               seed=7, cfg_scale=3.0, negative_prompt="", timeout_minutes=10, model=model, prompts=data)

    serve_model.__annotations__ = {"model_uri": str, "runs_dir": str, "root": str}
    dsl.pipeline(serve_model)(model_uri=str(outside / "model"), runs_dir=str(runs), root=str(root))
    served = json.loads((root / "journal" / "serve.json").read_text())["served"]
    size = get_preset("tiny").vision.resolution
    assert served["backend"] == "local" and served["model"] == str(outside / "model")
    assert served["url"].startswith("http://127.0.0.1:") and (served["width"], served["height"]) == (size, size)
    assert served["seed"] == 7 and isinstance(served["correct"], bool)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{served['url']}/v2/models/simplear/ready", timeout=5)
