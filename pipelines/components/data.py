"""Data components: the synthetic shapes dataset (`simplear shapes`) and its token shards (`simplear tokenize`)."""

from kfp.dsl import Dataset, Input, Output

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import STAGE_HELPERS, backend_store, publish, record_step, run_stage


@on_base_image(*STAGE_HELPERS)
def shapes_data(backend: str, runs_dir: str, root: str, data_root: str, run_id: str, name: str, images: int, seed: int,
                eval_per_tag: int, timeout_minutes: int, data: Output[Dataset], tag_weights: str = "") -> None:
    """Shapes images with short and long captions (meta.jsonl) in the `tag:weight,...` mix and held-out
    GenEval-style prompts, under data_root."""
    from simplear.store import join

    uri = join(data_root, "data", name)
    args = ["--out", uri, "--n", images, "--seed", seed, "--eval-per-tag", eval_per_tag, "--tag-weights", tag_weights]
    seconds = run_stage(backend, runs_dir, "shapes", f"shapes-{name}", args, 0, timeout_minutes, run_id)
    publish(data, uri, {"meta": join(uri, "meta.jsonl"), "eval_prompts": join(uri, "evaluation_metadata.jsonl"),
                        "images": images})
    record_step(backend_store(backend), root, f"shapes-{name}", {"stage": "data", "seconds": seconds, "output": uri})


@on_base_image(*STAGE_HELPERS)
def tokenize_data(backend: str, runs_dir: str, root: str, data_root: str, run_id: str, name: str, preset: str,
                  procs_per_node: int, timeout_minutes: int, data: Input[Dataset], tokens: Output[Dataset],
                  vision_checkpoint: str = "", resolution: int = 0) -> None:
    """Token shards of a dataset's meta file under data_root (complete once manifest.json exists).

    A Cosmos preset reads its tokenizer from `vision_checkpoint`; `resolution` 0 keeps the preset's. The step passes
    its TokenizeConfig as --config-json, so a bad value fails here, before any run starts.
    """
    from simplear.config import TokenizeConfig, VisionConfig, get_preset
    from simplear.store import join

    uri = join(data_root, "tokens", name)
    overrides = {"checkpoint": vision_checkpoint or None, "resolution": resolution or None}
    vision = VisionConfig.model_validate({**get_preset(preset).vision.model_dump(),
                                          **{key: value for key, value in overrides.items() if value}})
    config = TokenizeConfig(meta=data.metadata["meta"], output=uri, vision=vision)
    args = ["--config-json", config.model_dump_json(exclude_defaults=True), "--no-progress"]
    seconds = run_stage(backend, runs_dir, "tokenize", f"tokenize-{name}", args, procs_per_node, timeout_minutes,
                        run_id)
    publish(tokens, uri, {"preset": preset})
    record_step(backend_store(backend), root, f"tokenize-{name}", {"stage": "tokenize", "seconds": seconds,
                                                                  "output": uri})
