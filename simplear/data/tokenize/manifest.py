"""Rank summaries of a tokenize run, rank 0's wait for every rank, and the dataset manifest written last."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from simplear.data.tokenize.shards import ShardResult, file_entry
from simplear.store import ARTIFACT_FORMAT, MANIFEST, ObjectNotFound, Store, join

RANKS_DIR = "ranks"

log = logging.getLogger(__name__)


class RanksNotFinished(TimeoutError):
    """Rank 0 waited too long for other ranks' summaries; the message names the missing ranks."""


def rank_summary_path(rank: int) -> str:
    """Path of a rank's summary relative to the dataset root."""
    return f"{RANKS_DIR}/rank-{rank:05d}.json"


def rank_shards(rank: int, world_size: int, num_shards: int) -> list[int]:
    """The shards a rank tokenizes: every world_size-th one, starting at its rank."""
    return list(range(rank, num_shards, world_size))


def summary_bytes(rank: int, world_size: int, results: Sequence[ShardResult]) -> bytes:
    """A rank's summary: its shards with their files, record and error counts (deterministic bytes)."""
    summary = {
        "rank": rank,
        "world_size": world_size,
        "num_records": sum(result.records for result in results),
        "num_errors": sum(result.errors for result in results),
        "empty_shards": [result.shard for result in results if result.records == 0],
        "shards": [
            {"shard": result.shard, "records": result.records, "errors": result.errors, "files": list(result.files)}
            for result in results
        ],
    }
    return (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()


def _summary_problem(data: bytes, rank: int, world_size: int, num_shards: int) -> str | None:
    """Why a rank's summary does not describe its part of this run, or None when it does."""
    summary = json.loads(data)
    if summary.get("world_size") != world_size:
        return f"its summary is from a run with world size {summary.get('world_size')}"
    if [entry["shard"] for entry in summary["shards"]] != rank_shards(rank, world_size, num_shards):
        return "its summary lists other shards"
    return None


def wait_for_ranks(
    store: Store, root: str, world_size: int, num_shards: int, timeout_s: float, poll_s: float
) -> dict[int, bytes]:
    """Every rank's summary bytes, polling the store until all describe this run; RanksNotFinished on timeout."""
    found: dict[int, bytes] = {}
    reported: list[int] = []
    deadline = time.monotonic() + timeout_s
    while True:
        problems: dict[int, str] = {}
        for rank in sorted(set(range(world_size)) - set(found)):
            try:
                data = store.read(join(root, rank_summary_path(rank)))
            except ObjectNotFound:
                problems[rank] = f"no {rank_summary_path(rank)} yet"
                continue
            problem = _summary_problem(data, rank, world_size, num_shards)
            if problem is None:
                found[rank] = data
            else:
                problems[rank] = problem
        if not problems:
            return found
        if time.monotonic() >= deadline:
            details = "; ".join(f"rank {rank}: {problem}" for rank, problem in problems.items())
            raise RanksNotFinished(
                f"rank 0 waited {timeout_s:g} s for ranks {sorted(problems)} of {world_size} to finish "
                f"tokenizing into {root} ({details}); rerun them: the run resumes where it stopped"
            )
        if sorted(problems) != reported:
            reported = sorted(problems)
            log.info("rank 0 is waiting for ranks %s to finish", reported)
        time.sleep(poll_s)


def build_manifest(summaries: dict[int, bytes], extra_files: dict[str, bytes], tokens: dict) -> dict:
    """The artifact manifest: every shard, errors file, rank summary and extra file, plus the `tokens` block."""
    files = [file_entry(path, data) for path, data in extra_files.items()]
    shards: list[int] = []
    num_records = num_errors = 0
    for rank, data in sorted(summaries.items()):
        summary = json.loads(data)
        files.append(file_entry(rank_summary_path(rank), data))
        num_records += summary["num_records"]
        num_errors += summary["num_errors"]
        for entry in summary["shards"]:
            files.extend(entry["files"])
            if entry["records"]:
                shards.append(entry["shard"])
    block = {
        **tokens,
        "num_records": num_records,
        "num_errors": num_errors,
        "num_shards": len(shards),
        "shards": sorted(shards),
    }
    return {"format": ARTIFACT_FORMAT, "files": sorted(files, key=lambda entry: entry["path"]), "tokens": block}


def write_manifest(store: Store, root: str, manifest: dict) -> None:
    """Write manifest.json, the file that makes the dataset complete."""
    store.write(join(root, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
