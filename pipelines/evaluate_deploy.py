"""Entry point from an existing checkpoint: evaluate it on held-out prompts, serve it, check one image, report."""

from kfp import dsl

from pipelines.components.deployment import deploy
from pipelines.components.evaluation import evaluate
from pipelines.components.existing import existing_dataset, existing_model
from pipelines.parameters import with_parameter_help
from pipelines.platform_wiring import (
    BASE_IMAGE,
    CPU_POOL_NODE_SELECTOR,
    CPU_POOL_TOLERATIONS,
    ClusterParameters,
)
from pipelines.run_setup import start_run
from simplear.config import SHAPES_RECIPES

RECIPE = SHAPES_RECIPES["full"]


@dsl.pipeline(name="simplear-evaluate-deploy", description="Evaluate an existing checkpoint on held-out prompts, "
                                                           "point the model server at it and check one image.")
@with_parameter_help
def evaluate_deploy(
    model_uri: str,
    eval_data_uri: str,
    model_label: str = "model",
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    procs_per_node: int = 0,
    eval_protocol: str = RECIPE.eval_protocol,
    eval_images_per_prompt: int = RECIPE.eval_images_per_prompt,
    eval_score_shapes: bool = True,
    cfg_scale: float = RECIPE.cfg_scale,
    negative_prompt: str = RECIPE.negative_prompt,
    seed: int = RECIPE.seed,
    model_name: str = "",
    inference_service: str = "",
    stage_timeout_minutes: int = 1440,
    base_image: str = BASE_IMAGE,
    release: str = "",
    cpu_node_selector: dict = CPU_POOL_NODE_SELECTOR,
    cpu_tolerations: list = CPU_POOL_TOLERATIONS,
) -> str:
    """Score a checkpoint, then serve it; returns the report folder's URI."""
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    model = place(existing_model(backend=backend, uri=model_uri), display_name="Checkpoint").outputs["model"]
    held_out = place(existing_dataset(backend=backend, uri=eval_data_uri, required_file="evaluation_metadata.jsonl"),
                     display_name="Held-out prompts").outputs["data"]
    evaluation = pipeline_run.evaluation(procs_per_node, eval_protocol, eval_images_per_prompt, cfg_scale,
                                         negative_prompt, seed, eval_score_shapes)
    scored = place(evaluate(**evaluation, stage=model_label, model=model, prompts=held_out), display_name="Evaluate")
    served = place(deploy(**run, model_name=model_name, inference_service=inference_service, seed=seed,
                          cfg_scale=cfg_scale, negative_prompt=negative_prompt, score_shapes=eval_score_shapes,
                          model=model, prompts=held_out),
                   display_name="Serve and check").after(scored)
    return pipeline_run.report(scored, served)
