"""One shard of a tokenize run: load its images in background threads and encode them in batches, in meta order."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from simplear.data.image_prep import ImageRejected, prepare_image, read_image
from simplear.data.meta import CaptionPair, MetaRecord
from simplear.data.token_shards import TokenRecord
from simplear.store import Store
from simplear.vision.base import VisualTokenizer, pil_to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardError:
    """A meta record whose image was not tokenized, and why."""

    index: int
    image_path: str
    reason: str

    def to_json(self) -> dict:
        """The errors-file line of this error."""
        return {"index": self.index, "image_path": self.image_path, "reason": self.reason}


def _captions(record: MetaRecord) -> tuple[str, str]:
    """Short and long caption of a record; a single caption serves as both."""
    if isinstance(record.caption, CaptionPair):
        return record.caption.short, record.caption.long
    return record.caption, record.caption


def _in_order(
    pool: ThreadPoolExecutor, load: Callable[[str], Image.Image], paths: Sequence[str], window: int
) -> Iterator[Image.Image | ImageRejected]:
    """Each path's prepared image (or its rejection), in order, with at most `window` loads in flight."""

    def attempt(path: str) -> Image.Image | ImageRejected:
        try:
            return load(path)
        except ImageRejected as rejected:
            return rejected

    pending: deque[Future[Image.Image | ImageRejected]] = deque()
    upcoming = iter(paths)
    for path in upcoming:
        pending.append(pool.submit(attempt, path))
        if len(pending) >= window:
            break
    while pending:
        outcome = pending.popleft().result()
        following = next(upcoming, None)
        if following is not None:
            pending.append(pool.submit(attempt, following))
        yield outcome


@dataclass(frozen=True)
class ShardEncoder:
    """Turns the (index, record) items of one shard into token records and errors."""

    store: Store
    tokenizer: VisualTokenizer
    resolution: int
    min_size: int
    resample: Image.Resampling
    batch_size: int
    pool: ThreadPoolExecutor

    def load(self, uri: str) -> Image.Image:
        """The prepared image at uri, or ImageRejected."""
        return prepare_image(read_image(self.store, uri), self.resolution, self.min_size, self.resample)

    def encode(
        self, items: Sequence[tuple[int, MetaRecord]], advance: Callable[[int], object]
    ) -> tuple[list[TokenRecord], list[ShardError]]:
        """Token records of the usable images and errors of the others, both in meta order."""
        tokens: list[TokenRecord] = []
        errors: list[ShardError] = []
        batch: list[tuple[int, MetaRecord, Image.Image]] = []
        outcomes = _in_order(self.pool, self.load, [record.image_path for _, record in items], 2 * self.batch_size)
        for (index, record), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, ImageRejected):
                log.warning("image %d (%s) not tokenized: %s", index, record.image_path, outcome)
                errors.append(ShardError(index, record.image_path, str(outcome)))
                advance(1)
                continue
            batch.append((index, record, outcome))
            if len(batch) == self.batch_size:
                tokens.extend(self._encode_batch(batch))
                advance(len(batch))
                batch = []
        if batch:
            tokens.extend(self._encode_batch(batch))
            advance(len(batch))
        return tokens, errors

    def _encode_batch(self, batch: list[tuple[int, MetaRecord, Image.Image]]) -> list[TokenRecord]:
        """Token records of one batch of prepared images."""
        codes = self.tokenizer.encode(pil_to_tensor([image for _, _, image in batch])).cpu()
        return [
            TokenRecord(index, code, *_captions(record)) for (index, record, _), code in zip(batch, codes, strict=True)
        ]
