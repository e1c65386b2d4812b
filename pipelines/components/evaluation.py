"""Evaluation component: held-out prompts to images in GenEval's layout (`simplear evaluate`), scored per tag."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import STAGE_HELPERS, backend_store, progress, publish, record_step, run_stage


@on_base_image(*STAGE_HELPERS)
def evaluate(backend: str, runs_dir: str, root: str, run_id: str, stage: str, protocol: str, images_per_prompt: int,
             cfg_scale: float, negative_prompt: str, seed: int, procs_per_node: int, timeout_minutes: int,
             model: Input[Model], prompts: Input[Dataset], scores: Output[Metrics], samples: Output[Dataset],
             batch_size: int = 64, score_shapes: bool = True) -> None:
    """Images of the held-out prompts with fixed seeds in GenEval's layout; with `score_shapes`, scored per tag by
    the exact shapes checker (without: left for GenEval's own detector).

    Protocol fixed samples with `cfg_scale` against `negative_prompt`; simplear is upstream's published protocol
    (random prefixes, its negative prompt, CFG 6, 4 images per prompt), which ignores those two. The step passes
    its EvaluateConfig as --config-json, so a bad value fails here, before any run starts.
    """
    import json

    from simplear.config import EvaluateConfig, SamplingConfig
    from simplear.store import join

    out = join(root, "eval", stage)
    given = {"cfg_scale": cfg_scale, "negative_prompt": negative_prompt} if protocol == "fixed" else {}
    config = EvaluateConfig(
        model=model.metadata["uri"], prompts=prompts.metadata["eval_prompts"], out=out, protocol=protocol,
        images_per_prompt=images_per_prompt, score_shapes=score_shapes, progress=False, batch_size=batch_size,
        sampling=SamplingConfig(seed=seed, **given),
    )
    args = ["--config-json", config.model_dump_json(exclude_defaults=True)]
    seconds = run_stage(backend, runs_dir, "evaluate", f"evaluate-{stage}", args, procs_per_node, timeout_minutes,
                        run_id)
    store = backend_store(backend)
    prompt_count = sum(1 for line in store.read(prompts.metadata["eval_prompts"]).decode().splitlines() if line.strip())
    summary = {}
    if score_shapes:
        summary = json.loads(store.read(join(out, "summary.json")))
        for tag, score in summary["per_tag"].items():
            scores.log_metric(tag, score)
        scores.log_metric("overall", summary["overall"])
        progress(f"evaluate-{stage}: overall {summary['overall']:.3f} "
                 + " ".join(f"{tag} {score:.2f}" for tag, score in summary["per_tag"].items()))
    else:
        scores.log_metric("images", prompt_count * images_per_prompt)
        progress(f"evaluate-{stage}: {prompt_count} prompts x {images_per_prompt} images in GenEval's layout at {out}")
    used = config.protocol_sampling()
    sampling = {"protocol": protocol, "cfg_scale": used.cfg_scale, "negative_prompt": used.negative_prompt,
                "seed": used.seed}
    publish(samples, out, {"stage": stage, "model": model.metadata["uri"], "images_per_prompt": images_per_prompt,
                           **sampling})
    record_step(store, root, f"evaluate-{stage}", {
        "stage": "evaluate", "evaluates": stage, "seconds": seconds, "output": out, "prompts": prompt_count,
        "images_per_prompt": images_per_prompt, "sampling": sampling,
        **({"per_tag": summary["per_tag"], "overall": summary["overall"]} if summary else {}),
    })
