"""The full lifecycle: shapes data, tokenize, pretrain, SFT, GRPO (each evaluated), serve, report."""

from kfp import dsl

from pipelines.components.data import shapes_data, tokenize_data
from pipelines.components.deployment import deploy
from pipelines.components.evaluation import evaluate
from pipelines.components.training import grpo, pretrain, sft
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


@dsl.pipeline(name="simplear-lifecycle",
              description="Shapes data to a served SimpleAR model: tokenize, pretrain, SFT, GRPO, evaluation after "
                          "each stage on the same held-out prompts, serving check and report.")
@with_parameter_help
def lifecycle(
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    preset: str = RECIPE.preset,
    pretrain_images: int = RECIPE.pretrain_images,
    pretrain_data_seed: int = RECIPE.pretrain_data_seed,
    sft_images: int = RECIPE.sft_images,
    sft_data_seed: int = RECIPE.sft_data_seed,
    pretrain_tag_weights: str = RECIPE.pretrain_tag_weights,
    sft_tag_weights: str = RECIPE.sft_tag_weights,
    eval_per_tag: int = RECIPE.eval_per_tag,
    procs_per_node: int = 0,
    nodes: int = 1,
    batch_size: int = RECIPE.batch_size,
    pretrain_steps: int = RECIPE.pretrain_steps,
    pretrain_learning_rate: float = RECIPE.pretrain_learning_rate,
    sft_steps: int = RECIPE.sft_steps,
    sft_learning_rate: float = RECIPE.sft_learning_rate,
    train_lr_schedule: str = RECIPE.train_lr_schedule,
    train_weight_decay: float = RECIPE.train_weight_decay,
    train_adam_beta2: float = RECIPE.train_adam_beta2,
    train_loss_on: str = RECIPE.train_loss_on,
    train_prompt_prefixes: str = RECIPE.train_prompt_prefixes,
    grpo_steps: int = RECIPE.grpo_steps,
    grpo_batch_size: int = RECIPE.grpo_batch_size,
    grpo_num_generations: int = RECIPE.grpo_num_generations,
    grpo_num_iterations: int = RECIPE.grpo_num_iterations,
    grpo_learning_rate: float = RECIPE.grpo_learning_rate,
    grpo_max_minutes: float = RECIPE.grpo_max_minutes,
    grpo_policy: str = RECIPE.grpo_policy,
    grpo_prompt_prefix: str = RECIPE.grpo_prompt_prefix,
    grpo_beta: float = RECIPE.grpo_beta,
    rollout: str = "in_process",
    rollout_engine: str = "vllm",
    eval_protocol: str = RECIPE.eval_protocol,
    rollout_placement: str = "",
    eval_images_per_prompt: int = RECIPE.eval_images_per_prompt,
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
    """Train, align, evaluate and serve SimpleAR on synthetic shapes; returns the report folder's URI."""
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    ranks = {"procs_per_node": procs_per_node}
    optimisation = {"lr_schedule": train_lr_schedule, "weight_decay": train_weight_decay,
                    "adam_beta2": train_adam_beta2, "loss_on": train_loss_on, "prompt_prefixes": train_prompt_prefixes}
    sampling = {"cfg_scale": cfg_scale, "seed": seed}
    evaluation = pipeline_run.evaluation(procs_per_node, eval_protocol, eval_images_per_prompt, cfg_scale,
                                         negative_prompt, seed)

    data = {**run, "data_root": pipeline_run.data_root}
    pretrain_data = place(shapes_data(**data, name="pretrain", images=pretrain_images, seed=pretrain_data_seed,
                                      eval_per_tag=eval_per_tag, tag_weights=pretrain_tag_weights),
                          display_name="Shapes data: pretrain")
    sft_data = place(shapes_data(**data, name="sft", images=sft_images, seed=sft_data_seed, eval_per_tag=eval_per_tag,
                                 tag_weights=sft_tag_weights), display_name="Shapes data: SFT")
    held_out = pretrain_data.outputs["data"]
    pretrain_tokens = place(tokenize_data(**data, **ranks, name="pretrain", preset=preset, data=held_out),
                            display_name="Tokenize: pretrain")
    sft_tokens = place(tokenize_data(**data, **ranks, name="sft", preset=preset, data=sft_data.outputs["data"]),
                       display_name="Tokenize: SFT")

    pretrained = place(pretrain(**run, **ranks, **optimisation, nodes=nodes, preset=preset, steps=pretrain_steps,
                                batch_size=batch_size, learning_rate=pretrain_learning_rate, seed=seed,
                                tokens=pretrain_tokens.outputs["tokens"]), display_name="Pretrain")
    pretrain_eval = place(evaluate(**evaluation, stage="pretrain", model=pretrained.outputs["model"],
                                   prompts=held_out), display_name="Evaluate: pretrain")
    tuned = place(sft(**run, **ranks, **optimisation, nodes=nodes, steps=sft_steps, batch_size=batch_size,
                      learning_rate=sft_learning_rate, seed=seed, tokens=sft_tokens.outputs["tokens"],
                      init=pretrained.outputs["model"]), display_name="SFT")
    sft_eval = place(evaluate(**evaluation, stage="sft", model=tuned.outputs["model"], prompts=held_out),
                     display_name="Evaluate: SFT")
    aligned = place(grpo(**run, **ranks, **sampling, preset=preset, steps=grpo_steps, batch_size=grpo_batch_size,
                         num_generations=grpo_num_generations, num_iterations=grpo_num_iterations,
                         learning_rate=grpo_learning_rate, max_minutes=grpo_max_minutes, policy=grpo_policy,
                         prompt_prefix=grpo_prompt_prefix, beta=grpo_beta, negative_prompt=negative_prompt,
                         rollout=rollout, rollout_engine=rollout_engine, rollout_placement=rollout_placement,
                         nodes=nodes, prompts=sft_data.outputs["data"],
                         init=tuned.outputs["model"]), display_name="GRPO")
    grpo_eval = place(evaluate(**evaluation, stage="grpo", model=aligned.outputs["model"], prompts=held_out),
                      display_name="Evaluate: GRPO")
    served = place(deploy(**run, **sampling, model_name=model_name, inference_service=inference_service,
                          negative_prompt=negative_prompt, model=aligned.outputs["model"], prompts=held_out),
                   display_name="Serve and check")
    return pipeline_run.report(pretrain_eval, sft_eval, grpo_eval, served)
