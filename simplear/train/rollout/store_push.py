"""The weight push that works everywhere: the trainer saves the policy to the store; the previous push is removed."""

from __future__ import annotations

import shutil
import uuid

from simplear.model.simplear_lm import SimpleARModel
from simplear.store import MANIFEST, Store, is_s3, join, resolve_local


class StoreWeightPush:
    """Saves each pushed policy as a checkpoint artifact under `prefix`, keeping only the one the server serves."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.session = uuid.uuid4().hex[:8]
        self.pushes = 0
        self.served: str | None = None

    def save(self, model: SimpleARModel) -> str:
        """Write `model` (safetensors, manifest last) to a fresh URI under the prefix and return it."""
        self.pushes += 1
        uri = join(self.prefix, f"policy-{self.session}-{self.pushes:06d}")
        model.save(uri, self.store)
        return uri

    def served_now(self, uri: str) -> None:
        """Record that the server loaded `uri`; delete the checkpoint it replaced (manifest first)."""
        previous, self.served = self.served, uri
        if previous is None or previous == uri:
            return
        self.store.delete(join(previous, MANIFEST))
        if is_s3(previous):
            for child in self.store.list(previous):
                self.store.delete(child)
        else:
            shutil.rmtree(resolve_local(previous), ignore_errors=True)
