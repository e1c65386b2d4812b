"""Entry point from a token dataset: pretraining from a text LM (or a random init of the preset), then evaluation."""

from kfp import dsl

from pipelines.components.evaluation import evaluate
from pipelines.components.existing import existing_dataset
from pipelines.components.training import pretrain
from pipelines.parameters import with_parameter_help
from pipelines.platform_wiring import (
    BASE_IMAGE,
    CPU_POOL_NODE_SELECTOR,
    CPU_POOL_TOLERATIONS,
    ClusterParameters,
)
from pipelines.run_setup import start_run
from simplear.config import TRAIN_RECIPE as RECIPE


@dsl.pipeline(name="simplear-pretrain", description="Pretraining on an existing token dataset from a Qwen2.5 text LM, "
                                                    "evaluated on held-out prompts.")
@with_parameter_help
def pretrain_only(
    pretrain_tokens_uri: str,
    eval_data_uri: str,
    text_lm_uri: str = "",
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    preset: str = RECIPE.preset,
    procs_per_node: int = 0,
    nodes: int = 1,
    batch_size: int = RECIPE.batch_size,
    pretrain_steps: int = RECIPE.pretrain_steps,
    pretrain_learning_rate: float = RECIPE.pretrain_learning_rate,
    train_lr_schedule: str = RECIPE.train_lr_schedule,
    train_weight_decay: float = RECIPE.train_weight_decay,
    train_adam_beta2: float = RECIPE.train_adam_beta2,
    train_loss_on: str = RECIPE.train_loss_on,
    train_prompt_prefixes: str = RECIPE.train_prompt_prefixes,
    eval_protocol: str = RECIPE.eval_protocol,
    eval_images_per_prompt: int = RECIPE.eval_images_per_prompt,
    eval_score_shapes: bool = False,
    cfg_scale: float = RECIPE.cfg_scale,
    negative_prompt: str = RECIPE.negative_prompt,
    seed: int = RECIPE.seed,
    stage_timeout_minutes: int = 4320,
    base_image: str = BASE_IMAGE,
    release: str = "",
    cpu_node_selector: dict = CPU_POOL_NODE_SELECTOR,
    cpu_tolerations: list = CPU_POOL_TOLERATIONS,
) -> str:
    """Pretrain on a token dataset and write the evaluation samples; returns the report folder's URI."""
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    evaluation = pipeline_run.evaluation(procs_per_node, eval_protocol, eval_images_per_prompt, cfg_scale,
                                         negative_prompt, seed, eval_score_shapes)
    tokens = place(existing_dataset(backend=backend, uri=pretrain_tokens_uri, required_file="manifest.json"),
                   display_name="Token dataset")
    held_out = place(existing_dataset(backend=backend, uri=eval_data_uri, required_file="evaluation_metadata.jsonl"),
                     display_name="Held-out prompts").outputs["data"]
    pretrained = place(pretrain(**run, procs_per_node=procs_per_node, nodes=nodes, preset=preset,
                                steps=pretrain_steps, batch_size=batch_size, learning_rate=pretrain_learning_rate,
                                lr_schedule=train_lr_schedule, weight_decay=train_weight_decay,
                                adam_beta2=train_adam_beta2, loss_on=train_loss_on,
                                prompt_prefixes=train_prompt_prefixes, text_lm=text_lm_uri, seed=seed,
                                tokens=tokens.outputs["data"]),
                       display_name="Pretrain")
    after = place(evaluate(**evaluation, stage="pretrain", model=pretrained.outputs["model"], prompts=held_out),
                  display_name="Evaluate: pretrain")
    return pipeline_run.report(after)
