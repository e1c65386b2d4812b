"""Meta files: JSON lists or JSONL of {image_path, caption} records, and YAML mixes of them with sampling."""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

ReadBytes = Callable[[str], bytes]

_STRATEGY = re.compile(r"(?P<kind>first|end|random):(?P<amount>\d+(?:\.\d+)?)(?P<percent>%?)")
_ENTRY_KEYS = {"json_path", "sampling_strategy"}


class MetaError(ValueError):
    """A meta file that cannot be read or does not follow the schema; the message names file and place."""


@dataclass(frozen=True)
class CaptionPair:
    """A short and a long caption of one image."""

    short: str
    long: str


@dataclass(frozen=True)
class MetaRecord:
    """One image and its caption; image_path is an absolute local path or a store URI; extra keeps other fields."""

    image_path: str
    caption: str | CaptionPair
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a meta-file entry."""
        caption = self.caption
        if isinstance(caption, CaptionPair):
            caption = {"short": caption.short, "long": caption.long}
        return {"image_path": self.image_path, "caption": caption, **self.extra}


@dataclass(frozen=True)
class SamplingStrategy:
    """Which records of one meta file a YAML mix keeps: all, or the first / last / random `count` or `percent`%."""

    kind: Literal["all", "first", "end", "random"]
    count: int | None = None
    percent: float | None = None

    def size(self, total: int) -> int:
        """How many of `total` records to keep (a percentage rounds up, as in the original SimpleAR)."""
        if self.percent is not None:
            return min(math.ceil(self.percent * total / 100), total)
        if self.count is not None:
            return min(self.count, total)
        return total


def parse_sampling_strategy(text: str) -> SamplingStrategy:
    """`all`, `first:N`, `end:N`, `random:N`, or any of the last three with `P%` (0 <= P <= 100)."""
    if text.strip() == "all":
        return SamplingStrategy("all")
    match = _STRATEGY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad sampling_strategy {text!r}; expected all, first:N, end:N, random:N or random:P%")
    if match["percent"]:
        percent = float(match["amount"])
        if percent > 100:
            raise ValueError(f"bad sampling_strategy {text!r}: a percentage must be at most 100")
        return SamplingStrategy(match["kind"], percent=percent)
    if not match["amount"].isdigit():
        raise ValueError(f"bad sampling_strategy {text!r}: a count must be a whole number")
    return SamplingStrategy(match["kind"], count=int(match["amount"]))


def read_local_bytes(path: str) -> bytes:
    """The bytes of a local file; store URIs need a store's reader instead."""
    if "://" in path:
        raise ValueError(f"{path} is a URI; pass a read_bytes that can read it")
    return Path(path).read_bytes()


def resolve_path(base_file: str, path: str) -> str:
    """`path` as written when absolute or a URI, else resolved against the directory of `base_file`."""
    if "://" in path or os.path.isabs(path):
        return path
    if "://" in base_file:
        scheme, rest = base_file.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), path))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base_file)), path))


def _read_text(path: str, read_bytes: ReadBytes) -> str:
    """The file's text; any failure of the reader or of UTF-8 decoding becomes a MetaError."""
    try:
        data = read_bytes(path)
    except Exception as exc:
        raise MetaError(f"{path}: cannot read: {exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetaError(f"{path}: not UTF-8 text: {exc}") from exc


def _record(path: str, where: str, entry: Any) -> MetaRecord:
    """One validated record; `where` names its line or index in the error messages."""
    if not isinstance(entry, dict):
        raise MetaError(f"{path}: {where}: expected an object, got {type(entry).__name__}")
    for key in ("image_path", "caption"):
        if key not in entry:
            raise MetaError(f"{path}: {where}: missing field {key!r}")
    image_path, caption = entry["image_path"], entry["caption"]
    if not isinstance(image_path, str) or not image_path:
        raise MetaError(f"{path}: {where}: image_path must be a non-empty string, got {image_path!r}")
    if isinstance(caption, dict):
        if set(caption) != {"short", "long"} or not all(isinstance(text, str) for text in caption.values()):
            raise MetaError(f"{path}: {where}: caption object must have exactly string fields 'short' and 'long'")
        caption = CaptionPair(caption["short"], caption["long"])
    elif not isinstance(caption, str):
        raise MetaError(f"{path}: {where}: caption must be a string or {{short, long}}, got {type(caption).__name__}")
    extra = {key: value for key, value in entry.items() if key not in ("image_path", "caption")}
    return MetaRecord(resolve_path(path, image_path), caption, extra)


def _load_jsonl(path: str, text: str) -> list[MetaRecord]:
    """Records of a JSONL file, one per non-blank line."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MetaError(f"{path}: line {number}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
        records.append(_record(path, f"line {number}", entry))
    return records


def _load_json_list(path: str, text: str) -> list[MetaRecord]:
    """Records of a JSON file holding one list."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetaError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(entries, list):
        raise MetaError(f"{path}: expected a JSON list of records, got {type(entries).__name__}")
    return [_record(path, f"index {index}", entry) for index, entry in enumerate(entries)]


def _load_records(path: str, read_bytes: ReadBytes) -> list[MetaRecord]:
    """Records of one .json or .jsonl meta file."""
    if path.endswith(".jsonl"):
        return _load_jsonl(path, _read_text(path, read_bytes))
    if path.endswith(".json"):
        return _load_json_list(path, _read_text(path, read_bytes))
    raise MetaError(f"{path}: unsupported meta file type; expected .json, .jsonl, .yaml or .yml")


def _sample(records: list[MetaRecord], strategy: SamplingStrategy, rng: np.random.Generator) -> list[MetaRecord]:
    """The records a strategy keeps; random picks keep file order."""
    size = strategy.size(len(records))
    if strategy.kind == "all":
        return records
    if strategy.kind == "first":
        return records[:size]
    if strategy.kind == "end":
        return records[len(records) - size :]
    chosen = np.sort(rng.choice(len(records), size=size, replace=False))
    return [records[int(index)] for index in chosen]


def _mix_entry(path: str, index: int, entry: Any) -> tuple[str, SamplingStrategy]:
    """The meta file and strategy of one YAML dataset entry, validated."""
    where = f"{path}: datasets[{index}]"
    if not isinstance(entry, dict):
        raise MetaError(f"{where}: expected a mapping with json_path and sampling_strategy")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise MetaError(f"{where}: unknown keys {sorted(unknown)}; allowed: json_path, sampling_strategy")
    json_path = entry.get("json_path")
    if not isinstance(json_path, str) or not json_path:
        raise MetaError(f"{where}: json_path must be a non-empty string, got {json_path!r}")
    if not json_path.endswith((".json", ".jsonl")):
        raise MetaError(f"{where}: json_path {json_path!r} must name a .json or .jsonl file")
    strategy = entry.get("sampling_strategy", "all")
    if not isinstance(strategy, str):
        raise MetaError(f"{where}: sampling_strategy must be a string, got {strategy!r}")
    try:
        return resolve_path(path, json_path), parse_sampling_strategy(strategy)
    except ValueError as exc:
        raise MetaError(f"{where}: {exc}") from exc


def _load_mix(path: str, seed: int, read_bytes: ReadBytes) -> list[MetaRecord]:
    """Records of every meta file a YAML mix lists, each sampled by its strategy."""
    try:
        document = yaml.safe_load(_read_text(path, read_bytes))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"line {mark.line + 1}: " if mark is not None else ""
        raise MetaError(f"{path}: {place}invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), list) or not document["datasets"]:
        raise MetaError(f"{path}: expected a mapping with a non-empty 'datasets' list")
    records = []
    for index, entry in enumerate(document["datasets"]):
        json_path, strategy = _mix_entry(path, index, entry)
        try:
            loaded = _load_records(json_path, read_bytes)
        except MetaError as exc:
            raise MetaError(f"{path}: datasets[{index}]: {exc}") from exc
        records.extend(_sample(loaded, strategy, np.random.default_rng([seed, index])))
    return records


def load_meta(path: str, seed: int = 0, read_bytes: ReadBytes | None = None) -> list[MetaRecord]:
    """Records of a .json / .jsonl meta file or a .yaml / .yml mix; `seed` fixes random sampling."""
    reader = read_local_bytes if read_bytes is None else read_bytes
    if path.endswith((".yaml", ".yml")):
        return _load_mix(path, seed, reader)
    return _load_records(path, reader)
