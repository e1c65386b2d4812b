"""One rank of the tokenize job: its shards' images loaded in threads, encoded in batches, written resumably."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from simplear.config import TokenizeConfig, VisionConfig
from simplear.data.image_prep import ImageRejected, prepare_image, read_image, resample_for
from simplear.data.meta import CaptionPair, MetaRecord, load_meta
from simplear.data.tokenize.manifest import (
    build_manifest,
    rank_shards,
    rank_summary_path,
    summary_bytes,
    wait_for_ranks,
    write_manifest,
)
from simplear.data.tokenize.shards import ShardError, ShardResult, TokenRecord, completed_shard, write_shard
from simplear.store import MANIFEST, Store, canonical, claim_settings, join
from simplear.vision import load_visual_tokenizer
from simplear.vision.base import VisualTokenizer, pil_to_tensor

SETTINGS_FILE = "tokenize.json"

log = logging.getLogger(__name__)


class TokenizeError(RuntimeError):
    """A tokenize run that cannot start or continue; the message says why and what to do."""


@dataclass(frozen=True)
class TokenizeResult:
    """One rank's run: shards tokenized or skipped, their records, errors, images/s (0s if it was already complete)."""

    rank: int
    world_size: int
    shards_tokenized: int
    shards_skipped: int
    num_records: int
    num_errors: int
    images_per_s: float
    manifest: dict | None


@dataclass(frozen=True)
class RunOptions:
    """How one process runs: its rank, device, batching, image-loading threads, rank 0's wait, progress bar."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    batch_size: int = 32
    workers: int = 4
    wait_timeout_s: float = 3600.0
    poll_s: float = 1.0
    progress: bool = True

    def check(self) -> None:
        """TokenizeError unless rank, world size, batch size and workers make sense."""
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise TokenizeError(
                f"rank {self.rank} is outside world size {self.world_size}: need 0 <= RANK < WORLD_SIZE"
            )
        if self.batch_size < 1 or self.workers < 1:
            raise TokenizeError(f"batch size ({self.batch_size}) and workers ({self.workers}) must be at least 1")


def min_size_of(config: TokenizeConfig) -> int:
    """The smallest short edge an image may have: TokenizeConfig.min_size, by default the resolution."""
    return config.vision.resolution if config.min_size is None else config.min_size


def run_settings(config: TokenizeConfig, num_meta_records: int) -> dict:
    """The settings a run's shards depend on; a resumed run must match them."""
    vision = config.vision
    return {
        "meta": canonical(config.meta),
        "num_meta_records": num_meta_records,
        "shard_size": config.shard_size,
        "resolution": vision.resolution,
        "grid": vision.grid,
        "min_size": min_size_of(config),
        "vision": vision.kind,
        "codebook_size": vision.codebook_size,
        "vision_checkpoint": canonical(vision.checkpoint) if vision.checkpoint else None,
        "seed": config.seed,
    }


def _load_tokenizer(vision: VisionConfig, device: str) -> VisualTokenizer:
    """The encoder half of the configured visual tokenizer, or TokenizeError saying why it cannot load."""
    try:
        return load_visual_tokenizer(vision, device, encoder=True, decoder=False)
    except (ValueError, OSError, RuntimeError) as exc:
        raise TokenizeError(f"cannot load the {vision.kind} visual tokenizer: {exc}") from exc


def _shard_items(records: list[MetaRecord], shard: int, shard_size: int) -> list[tuple[int, MetaRecord]]:
    """The (meta index, record) pairs of one shard."""
    start = shard * shard_size
    return list(enumerate(records[start : start + shard_size], start=start))


def _split_done(
    store: Store, root: str, records: list[MetaRecord], shards: list[int], shard_size: int
) -> tuple[dict[int, ShardResult], list[int]]:
    """Results of the shards a previous run completed, and the shards still to tokenize."""
    done: dict[int, ShardResult] = {}
    todo: list[int] = []
    for shard in shards:
        result = completed_shard(store, root, shard, len(_shard_items(records, shard, shard_size)))
        if result is None:
            todo.append(shard)
        else:
            done[shard] = result
    return done, todo


def _tokenize_shards(
    config: TokenizeConfig, store: Store, records: list[MetaRecord], todo: list[int], options: RunOptions
) -> tuple[dict[int, ShardResult], float]:
    """Tokenize and write the given shards; their results and the images/s achieved."""
    vision = config.vision
    tokenizer = _load_tokenizer(vision, options.device)
    images = sum(len(_shard_items(records, shard, config.shard_size)) for shard in todo)
    results: dict[int, ShardResult] = {}
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(options.workers, thread_name_prefix="image") as pool,
        tqdm(total=images, unit="img", desc=f"tokenize rank {options.rank}", disable=not options.progress) as bar,
        logging_redirect_tqdm(),
    ):
        encoder = ShardEncoder(
            store, tokenizer, vision.resolution, min_size_of(config), resample_for(vision), options.batch_size, pool
        )
        for shard in todo:
            shard_started = time.perf_counter()
            items = _shard_items(records, shard, config.shard_size)
            tokens, errors = encoder.encode(items, bar.update)
            results[shard] = write_shard(store, config.output, shard, tokens, errors, vision.kind, vision.codebook_size)
            log.info(
                "rank %d: shard %d: %d tokenized, %d errors, %.1f images/s",
                options.rank,
                shard,
                len(tokens),
                len(errors),
                len(items) / (time.perf_counter() - shard_started),
            )
    return results, images / (time.perf_counter() - started)


def _write_manifest(
    store: Store, root: str, num_shards: int, settings: dict, settings_data: bytes, options: RunOptions
) -> dict:
    """Rank 0's last step: wait for every rank's summary, then write and return the manifest."""
    summaries = wait_for_ranks(store, root, options.world_size, num_shards, options.wait_timeout_s, options.poll_s)
    manifest = build_manifest(summaries, {SETTINGS_FILE: settings_data}, settings)
    write_manifest(store, root, manifest)
    tokens = manifest["tokens"]
    log.info(
        "wrote %s: %d records in %d shards, %d errors",
        join(root, MANIFEST),
        tokens["num_records"],
        tokens["num_shards"],
        tokens["num_errors"],
    )
    return manifest


def run_tokenize(
    config: TokenizeConfig, options: RunOptions | None = None, store: Store | None = None
) -> TokenizeResult:
    """Tokenize this rank's shards (skipping complete ones) and write its summary; rank 0 then writes the manifest."""
    options = options or RunOptions()
    options.check()
    if config.vision.kind == "cosmos" and not config.vision.checkpoint:
        raise TokenizeError("the Cosmos visual tokenizer needs its checkpoint directory or URI (--vision-checkpoint)")
    store = store or Store()
    root, rank, world_size = config.output, options.rank, options.world_size
    records = load_meta(config.meta, seed=config.seed, read_bytes=store.read)
    if not records:
        raise TokenizeError(f"{config.meta} lists no records: nothing to tokenize")
    settings = run_settings(config, len(records))
    settings_data = claim_settings(store, root, SETTINGS_FILE, settings, "tokenize", "--output")
    if store.artifact_exists(root):
        log.info("%s is already a complete token dataset; nothing to do", root)
        return TokenizeResult(rank, world_size, 0, 0, 0, 0, 0.0, store.read_manifest(root))
    num_shards = math.ceil(len(records) / config.shard_size)
    results, todo = _split_done(store, root, records, rank_shards(rank, world_size, num_shards), config.shard_size)
    log.info("rank %d/%d: %d shards already complete, %d to tokenize", rank, world_size, len(results), len(todo))
    images_per_s = 0.0
    if todo:
        tokenized, images_per_s = _tokenize_shards(config, store, records, todo, options)
        results.update(tokenized)
    ordered = [results[shard] for shard in sorted(results)]
    store.write(join(root, rank_summary_path(rank)), summary_bytes(rank, world_size, ordered))
    num_records = sum(result.records for result in ordered)
    num_errors = sum(result.errors for result in ordered)
    log.info(
        "rank %d/%d done: %d shards tokenized, %d skipped, %d records, %d errors, %.1f images/s",
        rank,
        world_size,
        len(todo),
        len(ordered) - len(todo),
        num_records,
        num_errors,
        images_per_s,
    )
    manifest = _write_manifest(store, root, num_shards, settings, settings_data, options) if rank == 0 else None
    skipped = len(ordered) - len(todo)
    return TokenizeResult(rank, world_size, len(todo), skipped, num_records, num_errors, images_per_s, manifest)


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
