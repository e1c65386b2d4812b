"""Training checkpoints in the store: ranks upload on each save, rank 0 the manifest last; resume takes the newest."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from simplear.store import ARTIFACT_FORMAT, COPY_CHUNK, MANIFEST, Store, canonical, claim_settings, join
from simplear.train import job

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
NOT_UPLOADED = frozenset({"training_args.bin"})
"""Trainer files resume does not read (a pickle of the run's arguments)."""
SETTINGS_FILE = "train.json"
MAY_CHANGE_ON_RESUME = frozenset({
    "output", "max_steps", "max_minutes", "save_steps", "logging_steps", "tensorboard", "scratch",
    "dataloader_workers", "gradient_checkpointing", "reduce_bucket_size", "rollout", "rollout_url",
    "rollout_batch_size",
})
"""Fields a resumed run may change: how long, where and how it runs, how often it reports, not what it learns."""
URI_FIELDS = ("data", "init_from", "prompts")


def checkpoints_uri(output: str) -> str:
    """Where a run's checkpoints live in the store."""
    return join(output, CHECKPOINTS_DIR)


def checkpoint_uri(output: str, step: int) -> str:
    """URI of a run's checkpoint after optimizer step `step`."""
    return join(checkpoints_uri(output), f"checkpoint-{step}")


def latest_checkpoint(store: Store, output: str) -> tuple[int, str] | None:
    """Step and URI of the newest complete checkpoint of a run (those without a manifest are ignored)."""
    found = []
    for uri in store.list_artifacts(checkpoints_uri(output)):
        match = CHECKPOINT_NAME.fullmatch(uri.rstrip("/").rsplit("/", 1)[-1])
        if match:
            found.append((int(match.group(1)), uri))
    return max(found) if found else None


def _local_files(directory: Path) -> list[str]:
    """Sorted POSIX paths, relative to directory, of the files to upload."""
    files = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    return sorted(rel for rel in files if rel not in NOT_UPLOADED and rel != MANIFEST)


def _upload(store: Store, source: Path, uri: str) -> dict:
    """Stream one file to uri; its manifest entry (path filled in by the caller)."""
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as f, store.open(uri, "wb") as sink:
        while chunk := f.read(COPY_CHUNK):
            digest.update(chunk)
            sink.write(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def publish_checkpoint(store: Store, local_dir: Path, uri: str) -> dict | None:
    """Upload a checkpoint every rank holds part of; returns the manifest on rank 0, None elsewhere.

    Each rank lists the files it holds; a file held by several ranks (a shared disk) is uploaded by the lowest
    of them. After every rank has uploaded its share, rank 0 writes the manifest, which makes the checkpoint
    complete; a crash before that leaves files the resume ignores.
    """
    if job.rank() == 0:
        store.delete(join(uri, MANIFEST))
    held = job.all_gather(_local_files(local_dir) if local_dir.is_dir() else [])
    owner: dict[str, int] = {}
    for holder, paths in enumerate(held):
        for path in paths:
            owner.setdefault(path, holder)
    mine = [path for path, holder in owner.items() if holder == job.rank()]
    entries = [{"path": path, **_upload(store, local_dir / path, join(uri, path))} for path in mine]
    uploaded = job.all_gather(entries)
    if job.rank() != 0:
        return None
    files = sorted((entry for entries in uploaded for entry in entries), key=lambda entry: entry["path"])
    manifest = {"format": ARTIFACT_FORMAT, "files": files}
    store.write(join(uri, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def fetch_checkpoint(store: Store, uri: str, local_dir: Path) -> Path:
    """Download a complete checkpoint (every rank takes all of it) into local_dir, replacing what is there."""
    shutil.rmtree(local_dir, ignore_errors=True)
    store.get_artifact(uri, local_dir)
    return local_dir


class StoreCheckpointCallback(TrainerCallback):
    """On every save, all ranks upload their part of checkpoint-N to `<output>/checkpoints/checkpoint-N`."""

    def __init__(self, store: Store, output: str) -> None:
        self.store = store
        self.output = output

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> TrainerControl:
        """Upload the checkpoint just written under args.output_dir; rank 0 writes its manifest last."""
        local = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        uri = checkpoint_uri(self.output, state.global_step)
        if publish_checkpoint(self.store, local, uri) is not None:
            log.info("checkpoint %s is complete", uri)
        shutil.rmtree(local, ignore_errors=True)
        return control


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from: its step, store URI and this rank's local copy."""

    step: int
    uri: str
    local_dir: Path


def train_settings(config: job.RunConfig) -> dict:
    """What a run's checkpoints depend on (nested blocks flattened to `block.field`); a resume must match them."""
    settings: dict = {}
    for name, value in config.model_dump(mode="json", exclude=set(MAY_CHANGE_ON_RESUME)).items():
        if name in URI_FIELDS and value:
            value = canonical(value)
        if isinstance(value, dict):
            settings.update({f"{name}.{field}": inner for field, inner in value.items()})
        else:
            settings[name] = value
    return settings


def find_resume_point(store: Store, config: job.RunConfig, local_dir: Path) -> ResumePoint | None:
    """Check the run's settings, then rank 0 picks the newest complete checkpoint; every rank downloads it.

    None on a fresh run; SettingsChanged when the output holds a run of other settings.
    """
    claim_settings(store, config.output, SETTINGS_FILE, train_settings(config), "train", "--output")
    found = latest_checkpoint(store, config.output) if job.rank() == 0 else None
    latest = job.broadcast_from_rank0(found)
    if latest is None:
        return None
    step, uri = latest
    return ResumePoint(step, uri, fetch_checkpoint(store, uri, local_dir / uri.rstrip("/").rsplit("/", 1)[-1]))
