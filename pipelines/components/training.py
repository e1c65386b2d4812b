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
             learning_rate: float, lr_schedule: str, weight_decay: float, loss_on: str, procs_per_node: int,
             timeout_minutes: int, tokens: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
             save_steps: int = 100, nodes: int = 1, text_lm: str = "") -> None:
    """Next-token pretraining on token shards of a random-init model of the preset or, given `text_lm`, of that
    Qwen2.5 text LM with the visual codes added to its vocabulary; the final checkpoint."""
    from simplear.store import join

    out = join(root, "models", "pretrain")
    init = ["--init", "text_lm", "--init-from", text_lm] if text_lm else []
    args = ["--data", tokens.metadata["uri"], "--output", out, "--preset", preset, *init,
            "--max-steps", steps, "--batch-size", batch_size, "--learning-rate", learning_rate,
            "--lr-schedule", lr_schedule, "--weight-decay", weight_decay, "--loss-on", loss_on,
            "--warmup-steps", max(1, steps // 20), "--save-steps", save_steps,
            "--logging-steps", max(1, min(10, steps // 10))]
    seconds = run_stage(backend, runs_dir, "pretrain", "pretrain", args, procs_per_node, timeout_minutes, run_id,
                        nodes=nodes)
    store = backend_store(backend)
    publish(model, join(out, "final"), {"stage": "pretrain", "steps": steps, "run": out})
    publish_training_metrics(training_log(store, out), metrics, seconds)
    record_step(store, root, "pretrain", {"stage": "pretrain", "seconds": seconds, "steps": steps,
                                         "output": join(out, "final")})


@on_base_image(*STAGE_HELPERS)
def sft(backend: str, runs_dir: str, root: str, run_id: str, steps: int, batch_size: int, learning_rate: float,
        lr_schedule: str, weight_decay: float, loss_on: str, procs_per_node: int, timeout_minutes: int,
        tokens: Input[Dataset], init: Input[Model], model: Output[Model], metrics: Output[Metrics],
        save_steps: int = 100, nodes: int = 1) -> None:
    """Supervised fine-tuning of a checkpoint on token shards; the final checkpoint."""
    from simplear.store import join

    out = join(root, "models", "sft")
    args = ["--data", tokens.metadata["uri"], "--output", out, "--init", "checkpoint",
            "--init-from", init.metadata["uri"], "--max-steps", steps, "--batch-size", batch_size,
            "--learning-rate", learning_rate, "--lr-schedule", lr_schedule, "--weight-decay", weight_decay,
            "--loss-on", loss_on, "--warmup-steps", max(1, steps // 20), "--save-steps", save_steps,
            "--logging-steps", max(1, min(10, steps // 10))]
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

    from simplear.store import join
    from simplear.train.grpo.reward_curve import reward_curve as curve_points

    if rollout not in ("in_process", "server"):
        raise ValueError(f"rollout must be in_process or server, not {rollout!r}")
    out = join(root, "models", "grpo")
    args = ["--prompts", prompts.metadata["meta"], "--caption", caption, "--init-from", init.metadata["uri"],
            "--output", out, "--preset", preset, "--max-steps", steps, "--batch-size", batch_size,
            "--num-generations", num_generations, "--num-iterations", num_iterations,
            "--learning-rate", learning_rate, "--warmup-ratio", 0.05, "--policy", policy,
            "--prompt-prefix", prompt_prefix, "--beta", beta, "--seed", seed, "--save-steps", save_steps,
            "--logging-steps", 1]
    for reward in (part.strip() for part in rewards.split(",")):
        if reward:
            args += ["--reward", reward]
    if clip_model:
        args += ["--clip-model", clip_model]
    if aesthetic_head:
        args += ["--aesthetic-head", aesthetic_head]
    if policy == "guided":
        args += ["--cfg-scale", cfg_scale, "--negative-prompt", negative_prompt]
    if max_minutes > 0:
        args += ["--max-minutes", max_minutes]
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
