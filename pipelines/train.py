"""The user's own data to a served model: tokenize with Cosmos, pretrain from a text LM, SFT, GRPO, evaluate, deploy."""

from kfp import dsl

from pipelines.components.data import tokenize_data
from pipelines.components.deployment import deploy
from pipelines.components.evaluation import evaluate
from pipelines.components.existing import existing_checkpoints, existing_dataset, existing_meta
from pipelines.components.training import grpo, pretrain, sft
from pipelines.parameters import with_parameter_help
from pipelines.platform_wiring import (
    BASE_IMAGE,
    CPU_POOL_NODE_SELECTOR,
    CPU_POOL_TOLERATIONS,
    ClusterParameters,
)
from pipelines.run_setup import start_run
from simplear.config import TRAIN_RECIPE as RECIPE


@dsl.pipeline(name="simplear-train",
              description="Your meta files to a served SimpleAR model: tokenize with the Cosmos tokenizer, pretrain "
                          "from a Qwen2.5 text LM, SFT, GRPO with registry rewards, GenEval-layout evaluation with "
                          "upstream's protocol, deploy.")
@with_parameter_help
def train_on_user_data(
    pretrain_meta_uri: str,
    sft_meta_uri: str,
    eval_data_uri: str,
    vision_checkpoint_uri: str,
    text_lm_uri: str,
    grpo_prompts_uri: str = "",
    clip_model_uri: str = "",
    aesthetic_head_uri: str = "",
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    preset: str = RECIPE.preset,
    resolution: int = RECIPE.resolution,
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
    grpo_max_minutes: float = 0.0,
    grpo_policy: str = RECIPE.grpo_policy,
    grpo_prompt_prefix: str = RECIPE.grpo_prompt_prefix,
    grpo_beta: float = RECIPE.grpo_beta,
    grpo_caption: str = RECIPE.grpo_caption,
    grpo_rewards: str = RECIPE.grpo_rewards,
    rollout: str = "server",
    rollout_engine: str = "vllm",
    rollout_placement: str = "",
    eval_protocol: str = RECIPE.eval_protocol,
    eval_images_per_prompt: int = RECIPE.eval_images_per_prompt,
    cfg_scale: float = RECIPE.cfg_scale,
    negative_prompt: str = RECIPE.negative_prompt,
    seed: int = RECIPE.seed,
    model_name: str = "",
    inference_service: str = "",
    stage_timeout_minutes: int = 4320,
    base_image: str = BASE_IMAGE,
    release: str = "",
    cpu_node_selector: dict = CPU_POOL_NODE_SELECTOR,
    cpu_tolerations: list = CPU_POOL_TOLERATIONS,
) -> str:
    """Train SimpleAR on your captioned images, align it, write GenEval-layout samples and serve it; the report's URI.

    The models carry their visual tokenizer (vision.json: the Cosmos URI and resolution the data was tokenized
    with), so SFT, GRPO, evaluation and serving read it from the checkpoint.
    """
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    ranks = {"procs_per_node": procs_per_node}
    optimisation = {"lr_schedule": train_lr_schedule, "weight_decay": train_weight_decay,
                    "adam_beta2": train_adam_beta2, "loss_on": train_loss_on, "prompt_prefixes": train_prompt_prefixes}
    evaluation = pipeline_run.evaluation(procs_per_node, eval_protocol, eval_images_per_prompt, cfg_scale,
                                         negative_prompt, seed, score_shapes=False)

    checked = place(existing_checkpoints(backend=backend, vision_checkpoint=vision_checkpoint_uri, text_lm=text_lm_uri,
                                         rewards=grpo_rewards, clip_model=clip_model_uri,
                                         aesthetic_head=aesthetic_head_uri), display_name="Checkpoints in the store")
    pretrain_meta = place(existing_meta(backend=backend, uri=pretrain_meta_uri), display_name="Pretraining meta")
    sft_meta = place(existing_meta(backend=backend, uri=sft_meta_uri), display_name="SFT meta")
    prompts = place(existing_meta(backend=backend, uri=grpo_prompts_uri, fallback_uri=sft_meta_uri),
                    display_name="GRPO prompts")
    held_out = place(existing_dataset(backend=backend, uri=eval_data_uri, required_file="evaluation_metadata.jsonl"),
                     display_name="Evaluation prompts").outputs["data"]
    data = {**run, **ranks, "data_root": pipeline_run.data_root, "preset": preset,
            "vision_checkpoint": vision_checkpoint_uri, "resolution": resolution}
    pretrain_tokens = place(tokenize_data(**data, name="pretrain", data=pretrain_meta.outputs["data"]),
                            display_name="Tokenize: pretrain").after(checked)
    sft_tokens = place(tokenize_data(**data, name="sft", data=sft_meta.outputs["data"]),
                       display_name="Tokenize: SFT").after(checked)

    pretrained = place(pretrain(**run, **ranks, **optimisation, nodes=nodes, preset=preset, steps=pretrain_steps,
                                batch_size=batch_size, learning_rate=pretrain_learning_rate, text_lm=text_lm_uri,
                                seed=seed, tokens=pretrain_tokens.outputs["tokens"]),
                       display_name="Pretrain from the text LM")
    tuned = place(sft(**run, **ranks, **optimisation, nodes=nodes, steps=sft_steps, batch_size=batch_size,
                      learning_rate=sft_learning_rate, seed=seed, tokens=sft_tokens.outputs["tokens"],
                      init=pretrained.outputs["model"]), display_name="SFT")
    sft_eval = place(evaluate(**evaluation, stage="sft", model=tuned.outputs["model"], prompts=held_out),
                     display_name="Evaluate: SFT")
    aligned = place(grpo(**run, **ranks, cfg_scale=cfg_scale, seed=seed, preset=preset, steps=grpo_steps,
                         batch_size=grpo_batch_size, num_generations=grpo_num_generations,
                         num_iterations=grpo_num_iterations, learning_rate=grpo_learning_rate,
                         max_minutes=grpo_max_minutes, policy=grpo_policy, prompt_prefix=grpo_prompt_prefix,
                         beta=grpo_beta, negative_prompt=negative_prompt, caption=grpo_caption, rewards=grpo_rewards,
                         clip_model=clip_model_uri, aesthetic_head=aesthetic_head_uri, rollout=rollout,
                         rollout_engine=rollout_engine, rollout_placement=rollout_placement, nodes=nodes,
                         prompts=prompts.outputs["data"], init=tuned.outputs["model"]), display_name="GRPO")
    grpo_eval = place(evaluate(**evaluation, stage="grpo", model=aligned.outputs["model"], prompts=held_out),
                      display_name="Evaluate: GRPO")
    served = place(deploy(**run, cfg_scale=cfg_scale, seed=seed, model_name=model_name,
                          inference_service=inference_service, negative_prompt=negative_prompt, score_shapes=False,
                          model=aligned.outputs["model"], prompts=held_out), display_name="Serve and check")
    return pipeline_run.report(sft_eval, grpo_eval, served)
