"""Publishes every checkpoint the Trainer writes locally to the store, then frees the local disk."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from simplear.store import Store
from simplear.train.checkpoints import checkpoint_uri, publish_checkpoint

log = logging.getLogger(__name__)


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
