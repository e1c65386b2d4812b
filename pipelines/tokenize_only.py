"""Entry point from a meta file in the store: its token shards, with the preset's or a Cosmos visual tokenizer."""

from kfp import dsl

from pipelines.components.data import tokenize_data
from pipelines.components.existing import existing_meta
from pipelines.parameters import with_parameter_help
from pipelines.platform_wiring import (
    BASE_IMAGE,
    CPU_POOL_NODE_SELECTOR,
    CPU_POOL_TOLERATIONS,
    ClusterParameters,
)
from pipelines.run_setup import start_run
from simplear.config import TRAIN_RECIPE as RECIPE


@dsl.pipeline(name="simplear-tokenize", description="Token shards of your meta file (JSON, JSONL or mixing YAML), "
                                                    "ready for pretraining or SFT.")
@with_parameter_help
def tokenize_only(
    meta_uri: str,
    vision_checkpoint_uri: str = "",
    backend: str = "kubernetes",
    store_root: str = "",
    run_tag: str = "",
    runs_dir: str = "",
    preset: str = RECIPE.preset,
    resolution: int = RECIPE.resolution,
    procs_per_node: int = 0,
    stage_timeout_minutes: int = 4320,
    base_image: str = BASE_IMAGE,
    release: str = "",
    cpu_node_selector: dict = CPU_POOL_NODE_SELECTOR,
    cpu_tolerations: list = CPU_POOL_TOLERATIONS,
) -> str:
    """Tokenize a meta file's images into `<run>/tokens/data`; returns the report folder's URI."""
    cluster = ClusterParameters(base_image, release, cpu_node_selector, cpu_tolerations)
    pipeline_run = start_run(backend, store_root, run_tag, runs_dir, stage_timeout_minutes, cluster)
    place, run = pipeline_run.place, pipeline_run.run
    meta = place(existing_meta(backend=backend, uri=meta_uri), display_name="Meta file")
    tokens = place(tokenize_data(**run, data_root=pipeline_run.data_root, procs_per_node=procs_per_node, name="data",
                                 preset=preset, vision_checkpoint=vision_checkpoint_uri, resolution=resolution,
                                 data=meta.outputs["data"]), display_name="Tokenize")
    return pipeline_run.report(tokens)
