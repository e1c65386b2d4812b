"""Entry point from an existing checkpoint and token dataset: SFT, evaluated before and after, report."""

from kfp import dsl

from pipelines.components.evaluation import evaluate
from pipelines.components.existing import existing_dataset, existing_model
from pipelines.components.training import sft
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


@dsl.pipeline(name="simplear-sft", description="SFT from an existing checkpoint on an existing token dataset, "
                                               "evaluated before and after on held-out prompts.")
@with_parameter_help
def sft_only(
    init_model_uri: str,
    sft_tokens_uri: str,
    eval_data_uri: str,
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    procs_per_node: int = 0,
    nodes: int = 1,
    batch_size: int = RECIPE.batch_size,
    sft_steps: int = RECIPE.sft_steps,
    sft_learning_rate: float = RECIPE.sft_learning_rate,
    train_lr_schedule: str = RECIPE.train_lr_schedule,
    train_weight_decay: float = RECIPE.train_weight_decay,
    train_adam_beta2: float = RECIPE.train_adam_beta2,
    train_loss_on: str = RECIPE.train_loss_on,
    train_prompt_prefixes: str = RECIPE.train_prompt_prefixes,
    eval_protocol: str = RECIPE.eval_protocol,
    eval_images_per_prompt: int = RECIPE.eval_images_per_prompt,
    eval_score_shapes: bool = True,
    cfg_scale: float = RECIPE.cfg_scale,
    negative_prompt: str = RECIPE.negative_prompt,
    seed: int = RECIPE.seed,
    stage_timeout_minutes: int = 1440,
    base_image: str = BASE_IMAGE,
    release: str = "",
    cpu_node_selector: dict = CPU_POOL_NODE_SELECTOR,
    cpu_tolerations: list = CPU_POOL_TOLERATIONS,
) -> str:
    """Fine-tune a checkpoint and score it against where it started; returns the report folder's URI."""
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    evaluation = pipeline_run.evaluation(procs_per_node, eval_protocol, eval_images_per_prompt, cfg_scale,
                                         negative_prompt, seed, eval_score_shapes)
    init = place(existing_model(backend=backend, uri=init_model_uri), display_name="Checkpoint to start from")
    tokens = place(existing_dataset(backend=backend, uri=sft_tokens_uri, required_file="manifest.json"),
                   display_name="SFT token dataset")
    held_out = place(existing_dataset(backend=backend, uri=eval_data_uri, required_file="evaluation_metadata.jsonl"),
                     display_name="Held-out prompts").outputs["data"]
    before = place(evaluate(**evaluation, stage="init", model=init.outputs["model"], prompts=held_out),
                   display_name="Evaluate: start")
    tuned = place(sft(**run, procs_per_node=procs_per_node, nodes=nodes, steps=sft_steps, batch_size=batch_size,
                      lr_schedule=train_lr_schedule, weight_decay=train_weight_decay, adam_beta2=train_adam_beta2,
                      loss_on=train_loss_on, prompt_prefixes=train_prompt_prefixes,
                      learning_rate=sft_learning_rate, seed=seed, tokens=tokens.outputs["data"],
                      init=init.outputs["model"]),
                  display_name="SFT")
    after = place(evaluate(**evaluation, stage="sft", model=tuned.outputs["model"], prompts=held_out),
                  display_name="Evaluate: SFT")
    return pipeline_run.report(before, after)
