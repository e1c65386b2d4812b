"""Entry points' first artifacts: a dataset or checkpoint already in the store, checked complete and published."""

from kfp.dsl import Dataset, Model, Output

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import backend_store, platform_config, publish


@on_base_image(platform_config, backend_store, publish)
def existing_model(backend: str, uri: str, model: Output[Model]) -> None:
    """A checkpoint in the store (complete: its manifest.json exists) as this run's Model."""
    from simplear.store import MANIFEST, join

    if not backend_store(backend).exists(join(uri, MANIFEST)):
        raise FileNotFoundError(f"{uri} is not a complete checkpoint: it has no {MANIFEST}")
    publish(model, uri, {})


@on_base_image(platform_config, backend_store, publish)
def existing_dataset(backend: str, uri: str, required_file: str, data: Output[Dataset]) -> None:
    """A dataset folder in the store holding `required_file` (manifest.json, meta.jsonl, ...) as this run's Dataset."""
    from simplear.store import join

    store = backend_store(backend)
    if not store.exists(join(uri, required_file)):
        raise FileNotFoundError(f"{uri} holds no {required_file}")
    files = {"meta": "meta.jsonl", "eval_prompts": "evaluation_metadata.jsonl"}
    publish(data, uri, {key: join(uri, name) for key, name in files.items() if store.exists(join(uri, name))})
