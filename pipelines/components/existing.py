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


@on_base_image(platform_config, backend_store, publish)
def existing_meta(backend: str, uri: str, data: Output[Dataset], fallback_uri: str = "") -> None:
    """A meta file in the store (JSON list, JSONL or mixing YAML of image records; a folder: its meta.jsonl),
    checked readable, as a Dataset; an empty `uri` takes `fallback_uri`."""
    from simplear.data.meta import load_meta
    from simplear.store import join

    uri = uri or fallback_uri
    if not uri.endswith((".json", ".jsonl", ".yaml", ".yml")):
        uri = join(uri, "meta.jsonl")
    store = backend_store(backend)
    if not store.exists(uri):
        raise FileNotFoundError(f"meta file {uri} does not exist")
    records = load_meta(uri, seed=0, read_bytes=store.read)
    if not records:
        raise ValueError(f"{uri} lists no records")
    publish(data, uri, {"meta": uri, "records": len(records)})


@on_base_image(platform_config, backend_store)
def existing_checkpoints(backend: str, vision_checkpoint: str, text_lm: str, rewards: str, clip_model: str,
                         aesthetic_head: str) -> None:
    """Check, before any stage runs, that the Cosmos tokenizer, the text LM and the reward models are in the store
    (a model folder on S3 complete, as `simplear upload` writes it)."""
    from simplear.config import RewardSpec
    from simplear.store import MANIFEST, is_s3, join

    store = backend_store(backend)
    names = {RewardSpec.from_text(text).name for text in rewards.split(",") if text.strip()}

    def model_file(uri: str) -> str:
        """The file that shows a model folder is there: manifest.json on S3, config.json on disk."""
        return join(uri, MANIFEST if is_s3(uri) else "config.json")

    needed = {"Cosmos tokenizer (vision_checkpoint_uri)": [join(vision_checkpoint, "encoder.jit"),
                                                           join(vision_checkpoint, "decoder.jit")],
              "text LM (text_lm_uri)": [model_file(text_lm)]}
    if names & {"clip", "aesthetic"}:
        if not clip_model:
            raise ValueError(f"rewards {sorted(names & {'clip', 'aesthetic'})} read a CLIP model: set clip_model_uri")
        needed["CLIP model (clip_model_uri)"] = [model_file(clip_model)]
    if "aesthetic" in names:
        if not aesthetic_head:
            raise ValueError("the aesthetic reward reads LAION's MLP head: set aesthetic_head_uri")
        needed["aesthetic head (aesthetic_head_uri)"] = [aesthetic_head]
    missing = [f"{what}: {uri}" for what, uris in needed.items() for uri in uris if not store.exists(uri)]
    if missing:
        raise FileNotFoundError("not in the store: " + "; ".join(missing)
                                + " (upload a model folder with `simplear upload DIR URI`)")
