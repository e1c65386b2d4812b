"""Training components: pretrain and SFT (`simplear train`, DeepSpeed ranks) and GRPO (trainer + rollouts)."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import (
    STAGE_HELPERS,
    backend_store,
    publish,
    publish_training_metrics,
    record_step,
    run_stage,
    training_log,
)


@on_base_image(*STAGE_HELPERS)
def pretrain(backend: str, runs_dir: str, root: str, run_id: str, preset: str, steps: int, batch_size: int,
             learning_rate: float, lr_schedule: str, weight_decay: float, adam_beta2: float, loss_on: str,
             prompt_prefixes: str, procs_per_node: int, timeout_minutes: int, tokens: Input[Dataset],
             model: Output[Model], metrics: Output[Metrics], save_steps: int = 100, nodes: int = 1, text_lm: str = "",
             seed: int = 0) -> None:
    """Next-token pretraining on token shards of a random-init model of the preset or, given `text_lm`, of that
    Qwen2.5 text LM with the visual codes added to its vocabulary; the final checkpoint."""
    from simplear.config import TrainConfig
    from simplear.store import join

    out = join(root, "models", "pretrain")
    config = TrainConfig(
        stage="pretrain", data=tokens.metadata["uri"], output=out, preset=preset,
        init="text_lm" if text_lm else "random", init_from=text_lm or None, max_steps=steps, batch_size=batch_size,
        learning_rate=learning_rate, lr_schedule=lr_schedule, weight_decay=weight_decay, adam_beta2=adam_beta2,
        loss_on=loss_on, prompt_prefixes=prompt_prefixes,
        warmup_steps=max(1, steps // 20), save_steps=save_steps, logging_steps=max(1, min(10, steps // 10)), seed=seed,
    )
    args = ["--config-json", config.model_dump_json(exclude_defaults=True)]
    seconds = run_stage(backend, runs_dir, "pretrain", "pretrain", args, procs_per_node, timeout_minutes, run_id,
                        nodes=nodes)
    store = backend_store(backend)
    publish(model, join(out, "final"), {"stage": "pretrain", "steps": steps, "run": out})
    publish_training_metrics(training_log(store, out), metrics, seconds)
    record_step(store, root, "pretrain", {"stage": "pretrain", "seconds": seconds, "steps": steps,
                                         "output": join(out, "final")})


@on_base_image(*STAGE_HELPERS)
def sft(backend: str, runs_dir: str, root: str, run_id: str, steps: int, batch_size: int, learning_rate: float,
        lr_schedule: str, weight_decay: float, adam_beta2: float, loss_on: str, prompt_prefixes: str,
        procs_per_node: int, timeout_minutes: int, tokens: Input[Dataset], init: Input[Model], model: Output[Model],
        metrics: Output[Metrics], save_steps: int = 100, nodes: int = 1, seed: int = 0) -> None:
    """Supervised fine-tuning of a checkpoint on token shards; the final checkpoint."""
    from simplear.config import TrainConfig
    from simplear.store import join

    out = join(root, "models", "sft")
    config = TrainConfig(
        stage="sft", data=tokens.metadata["uri"], output=out, init="checkpoint", init_from=init.metadata["uri"],
        max_steps=steps, batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule,
        weight_decay=weight_decay, adam_beta2=adam_beta2, loss_on=loss_on, prompt_prefixes=prompt_prefixes,
        warmup_steps=max(1, steps // 20), save_steps=save_steps, logging_steps=max(1, min(10, steps // 10)), seed=seed,
    )
    args = ["--config-json", config.model_dump_json(exclude_defaults=True)]
    seconds = run_stage(backend, runs_dir, "sft", "sft", args, procs_per_node, timeout_minutes, run_id, nodes=nodes)
    store = backend_store(backend)
    publish(model, join(out, "final"), {"stage": "sft", "steps": steps, "run": out})
    publish_training_metrics(training_log(store, out), metrics, seconds)
    record_step(store, root, "sft", {"stage": "sft", "seconds": seconds, "steps": steps, "output": join(out, "final")})


@on_base_image(*STAGE_HELPERS)
def grpo(backend: str, runs_dir: str, root: str, run_id: str, preset: str, steps: int, batch_size: int,
         num_generations: int, num_iterations: int, learning_rate: float, max_minutes: float, policy: str,
         prompt_prefix: str, beta: float, cfg_scale: float, negative_prompt: str, seed: int, rollout: str,
         rollout_engine: str, procs_per_node: int, timeout_minutes: int, prompts: Input[Dataset], init: Input[Model],
         model: Output[Model], reward_curve: Output[HTML], metrics: Output[Metrics], caption: str = "short",
         save_steps: int = 25, nodes: int = 1, rollout_placement: str = "", rewards: str = "geneval_shapes",
         clip_model: str = "", aesthetic_head: str = "") -> None:
    """GRPO with registry rewards, rollouts in the trainer or from a rollout server; model and reward curve.

    `rewards` is `name[:weight]` comma-separated (geneval_shapes, clip, aesthetic); clip and aesthetic read the CLIP
    model `clip_model`, aesthetic also the LAION head `aesthetic_head`. Policy plain samples without CFG; guided
    samples with `cfg_scale` against `negative_prompt` and trains on that. The rollout server runs as the trainer's
    sidecar or on the rollout pool (`rollout_placement`).
    """
    import base64

    from simplear.config import GRPOTrainConfig, RewardSpec, RolloutSampling
    from simplear.store import join
    from simplear.train.grpo.reward_curve import reward_curve as curve_points

    if rollout not in ("in_process", "server"):
        raise ValueError(f"rollout must be in_process or server, not {rollout!r}")
    out = join(root, "models", "grpo")
    config = GRPOTrainConfig(
        prompts=prompts.metadata["meta"], caption=caption, init_from=init.metadata["uri"], output=out, preset=preset,
        max_steps=steps, batch_size=batch_size, num_generations=num_generations, num_iterations=num_iterations,
        learning_rate=learning_rate, warmup_ratio=0.05, policy=policy, prompt_prefix=prompt_prefix, beta=beta,
        seed=seed, save_steps=save_steps, logging_steps=1, max_minutes=max_minutes if max_minutes > 0 else None,
        rewards=tuple(RewardSpec.from_text(text, clip_model or None, aesthetic_head or None)
                      for text in rewards.split(",") if text.strip()),
        sampling=RolloutSampling(cfg_scale=cfg_scale, negative_prompt=negative_prompt) if policy == "guided"
        else RolloutSampling(),
    )
    args = ["--config-json", config.model_dump_json(exclude_defaults=True)]
    server = None
    if rollout == "server":
        server = {"model": init.metadata["uri"], "engine": rollout_engine, "placement": rollout_placement or None}
    seconds = run_stage(backend, runs_dir, "grpo", "grpo", args, procs_per_node, timeout_minutes, run_id, server,
                        nodes=nodes)
    store = backend_store(backend)
    rows = training_log(store, out)
    curve = [[point["step"], point["reward"]] for point in curve_points(rows)]
    png = join(out, "logs", "reward_curve.png")
    with open(reward_curve.path, "w") as page:
        page.write(f'<img alt="GRPO reward per step" src="data:image/png;base64,'
                   f'{base64.b64encode(store.read(png)).decode()}">')
    publish(model, join(out, "final"), {"stage": "grpo", "steps": steps, "run": out, "rollout": rollout})
    publish_training_metrics(rows, metrics, seconds)
    record_step(store, root, "grpo", {"stage": "grpo", "seconds": seconds, "steps": steps, "output": join(out, "final"),
                                      "rollout": rollout, "reward_curve": curve, "reward_curve_png": png})
