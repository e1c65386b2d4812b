"""Entry point from an existing SFT checkpoint and prompt dataset: GRPO, evaluated before and after, report."""

from kfp import dsl

from pipelines.components.evaluation import evaluate
from pipelines.components.existing import existing_dataset, existing_meta, existing_model
from pipelines.components.training import grpo
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


@dsl.pipeline(name="simplear-grpo", description="GRPO from an existing SFT checkpoint on a shapes prompt dataset, "
                                                "evaluated before and after on held-out prompts.")
@with_parameter_help
def grpo_only(
    init_model_uri: str,
    prompts_data_uri: str,
    eval_data_uri: str,
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    preset: str = RECIPE.preset,
    procs_per_node: int = 0,
    nodes: int = 1,
    grpo_steps: int = RECIPE.grpo_steps,
    grpo_batch_size: int = RECIPE.grpo_batch_size,
    grpo_num_generations: int = RECIPE.grpo_num_generations,
    grpo_num_iterations: int = RECIPE.grpo_num_iterations,
    grpo_learning_rate: float = RECIPE.grpo_learning_rate,
    grpo_max_minutes: float = RECIPE.grpo_max_minutes,
    grpo_policy: str = RECIPE.grpo_policy,
    grpo_prompt_prefix: str = RECIPE.grpo_prompt_prefix,
    grpo_beta: float = RECIPE.grpo_beta,
    grpo_caption: str = "short",
    grpo_rewards: str = "geneval_shapes",
    clip_model_uri: str = "",
    aesthetic_head_uri: str = "",
    rollout: str = "server",
    rollout_engine: str = "vllm",
    eval_protocol: str = RECIPE.eval_protocol,
    rollout_placement: str = "",
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
    """Align an SFT checkpoint with the shapes reward and score it against where it started; the report's URI."""
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    evaluation = pipeline_run.evaluation(procs_per_node, eval_protocol, eval_images_per_prompt, cfg_scale,
                                         negative_prompt, seed, eval_score_shapes)
    init = place(existing_model(backend=backend, uri=init_model_uri), display_name="SFT checkpoint")
    prompts = place(existing_meta(backend=backend, uri=prompts_data_uri), display_name="GRPO prompts")
    held_out = place(existing_dataset(backend=backend, uri=eval_data_uri, required_file="evaluation_metadata.jsonl"),
                     display_name="Held-out prompts").outputs["data"]
    before = place(evaluate(**evaluation, stage="sft", model=init.outputs["model"], prompts=held_out),
                   display_name="Evaluate: SFT")
    aligned = place(grpo(**run, procs_per_node=procs_per_node, nodes=nodes, cfg_scale=cfg_scale, seed=seed,
                         preset=preset, steps=grpo_steps, batch_size=grpo_batch_size,
                         num_generations=grpo_num_generations, num_iterations=grpo_num_iterations,
                         learning_rate=grpo_learning_rate, max_minutes=grpo_max_minutes, policy=grpo_policy,
                         prompt_prefix=grpo_prompt_prefix, beta=grpo_beta, negative_prompt=negative_prompt,
                         caption=grpo_caption, rewards=grpo_rewards, clip_model=clip_model_uri,
                         aesthetic_head=aesthetic_head_uri,
                         rollout=rollout, rollout_engine=rollout_engine, rollout_placement=rollout_placement,
                         prompts=prompts.outputs["data"], init=init.outputs["model"]), display_name="GRPO")
    after = place(evaluate(**evaluation, stage="grpo", model=aligned.outputs["model"], prompts=held_out),
                  display_name="Evaluate: GRPO")
    return pipeline_run.report(before, after)
