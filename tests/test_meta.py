"""Meta files: JSON / JSONL records, YAML mixes with sampling strategies, path resolution and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from simplear.data.meta import (
    CaptionPair,
    MetaError,
    MetaRecord,
    SamplingStrategy,
    load_meta,
    parse_sampling_strategy,
)


def _jsonl(path: Path, entries: list) -> str:
    """Write entries as JSONL and return the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return str(path)


def _numbered(path: Path, n: int) -> str:
    """A JSONL meta file of n records whose captions are "0" .. "n-1"."""
    return _jsonl(path, [{"image_path": f"{i}.png", "caption": str(i)} for i in range(n)])


def _captions(records: list[MetaRecord]) -> list[str]:
    """The string captions of records."""
    return [record.caption for record in records]


def _mix(path: Path, *entries: str) -> str:
    """Write a YAML mix whose dataset entries are the given YAML snippets."""
    path.write_text("datasets:\n" + "".join(f"  - {entry}\n" for entry in entries))
    return str(path)


# --- records ------------------------------------------------------------------------------------


def test_jsonl_records_with_both_caption_forms_and_extra_fields(tmp_path: Path) -> None:
    meta = _jsonl(
        tmp_path / "sub" / "meta.jsonl",
        [
            {"image_path": "images/a.png", "caption": "a red circle"},
            {"image_path": "/abs/b.png", "caption": {"short": "s", "long": "l"}, "metadata": {"tag": "colors"}},
            {"image_path": "s3://bucket/c.png", "caption": "c"},
        ],
    )
    with open(meta, "a") as file:
        file.write("\n   \n")
    records = load_meta(meta)
    assert records == [
        MetaRecord(str(tmp_path / "sub" / "images" / "a.png"), "a red circle"),
        MetaRecord("/abs/b.png", CaptionPair("s", "l"), {"metadata": {"tag": "colors"}}),
        MetaRecord("s3://bucket/c.png", "c"),
    ]
    assert records[1].to_json() == {
        "image_path": "/abs/b.png",
        "caption": {"short": "s", "long": "l"},
        "metadata": {"tag": "colors"},
    }


def test_relative_meta_paths_resolve_against_the_meta_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _jsonl(tmp_path / "data" / "meta.jsonl", [{"image_path": "../img/x.png", "caption": "x"}])
    monkeypatch.chdir(tmp_path)
    assert load_meta("data/meta.jsonl")[0].image_path == str(tmp_path / "img" / "x.png")


def test_json_list_records(tmp_path: Path) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps([{"image_path": "a.png", "caption": "a"}, {"image_path": "b.png", "caption": "b"}]))
    assert [(r.image_path, r.caption) for r in load_meta(str(meta))] == [
        (str(tmp_path / "a.png"), "a"),
        (str(tmp_path / "b.png"), "b"),
    ]


def test_a_pluggable_reader_resolves_store_uris() -> None:
    files = {
        "s3://bucket/mixes/mix.yaml": b"datasets:\n  - json_path: ../parts/a.jsonl\n",
        "s3://bucket/parts/a.jsonl": b'{"image_path": "img/1.png", "caption": "one"}\n',
    }
    records = load_meta("s3://bucket/mixes/mix.yaml", read_bytes=files.__getitem__)
    assert records == [MetaRecord("s3://bucket/parts/img/1.png", "one")]


# --- errors -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(MetaError, match=f"{missing}: cannot read"):
        load_meta(missing)


def test_uri_without_a_reader() -> None:
    with pytest.raises(MetaError, match="s3://b/m.jsonl: cannot read: .*pass a read_bytes"):
        load_meta("s3://b/m.jsonl")


def test_invalid_json_names_the_jsonl_line(tmp_path: Path) -> None:
    meta = tmp_path / "m.jsonl"
    meta.write_text('{"image_path": "a.png", "caption": "a"}\n\n{"image_path": "b.png", caption}\n')
    with pytest.raises(MetaError, match=r"m\.jsonl: line 3: invalid JSON"):
        load_meta(str(meta))


def test_invalid_json_names_the_json_line(tmp_path: Path) -> None:
    meta = tmp_path / "m.json"
    meta.write_text('[\n  {"image_path": "a.png", "caption": "a"},\n  {"image_path": }\n]')
    with pytest.raises(MetaError, match=r"m\.json: line 3: invalid JSON"):
        load_meta(str(meta))


def test_json_that_is_not_a_list(tmp_path: Path) -> None:
    meta = tmp_path / "m.json"
    meta.write_text('{"image_path": "a.png", "caption": "a"}')
    with pytest.raises(MetaError, match=r"m\.json: expected a JSON list of records, got dict"):
        load_meta(str(meta))


def test_missing_field_names_the_line_or_index(tmp_path: Path) -> None:
    jsonl = _jsonl(tmp_path / "m.jsonl", [{"image_path": "a.png", "caption": "a"}, {"image_path": "b.png"}])
    with pytest.raises(MetaError, match=r"m\.jsonl: line 2: missing field 'caption'"):
        load_meta(jsonl)
    listed = tmp_path / "m.json"
    listed.write_text(json.dumps([{"caption": "a"}]))
    with pytest.raises(MetaError, match=r"m\.json: index 0: missing field 'image_path'"):
        load_meta(str(listed))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image_path": 3, "caption": "a"}, "image_path must be a non-empty string, got 3"),
        ({"image_path": "", "caption": "a"}, "image_path must be a non-empty string"),
        ({"image_path": "a.png", "caption": 7}, "caption must be a string or {short, long}, got int"),
        ({"image_path": "a.png", "caption": {"short": "s"}}, "caption object must have exactly string fields"),
        ({"image_path": "a.png", "caption": {"short": "s", "long": 2}}, "caption object must have exactly string"),
        (["a.png", "a"], "expected an object, got list"),
    ],
)
def test_wrong_types_name_the_line(tmp_path: Path, entry: object, message: str) -> None:
    meta = _jsonl(tmp_path / "m.jsonl", [{"image_path": "ok.png", "caption": "ok"}, entry])
    with pytest.raises(MetaError, match=r"m\.jsonl: line 2: " + re.escape(message)):
        load_meta(meta)


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(MetaError, match=r"m\.csv: unsupported meta file type"):
        load_meta(str(tmp_path / "m.csv"))


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ("{json_path: a.jsonl, sampling_strategy: 'random:abc'}", r"bad sampling_strategy 'random:abc'"),
        ("{json_path: a.jsonl, sampling_strategy: 5}", r"sampling_strategy must be a string"),
        ("{sampling_strategy: all}", r"json_path must be a non-empty string"),
        ("{json_path: a.txt}", r"json_path 'a\.txt' must name a \.json or \.jsonl file"),
        ("{json_path: a.jsonl, weight: 2}", r"unknown keys \['weight'\]"),
        ("a.jsonl", r"expected a mapping"),
        ("{json_path: gone.jsonl}", r".*gone\.jsonl: cannot read"),
        ("{json_path: bad.jsonl}", r".*bad\.jsonl: line 1: missing field 'caption'"),
    ],
)
def test_bad_mix_entries_name_the_entry(tmp_path: Path, entry: str, pattern: str) -> None:
    _numbered(tmp_path / "a.jsonl", 3)
    _jsonl(tmp_path / "bad.jsonl", [{"image_path": "x.png"}])
    mix = _mix(tmp_path / "mix.yaml", "{json_path: a.jsonl}", entry)
    with pytest.raises(MetaError, match=r"mix\.yaml: datasets\[1\]: " + pattern):
        load_meta(mix)


def test_invalid_yaml_and_missing_datasets(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("datasets:\n  - json_path: a.jsonl\n   bad: [\n")
    with pytest.raises(MetaError, match=r"broken\.yaml: line \d+: invalid YAML"):
        load_meta(str(broken))
    empty = tmp_path / "empty.yml"
    empty.write_text("datasets: []\n")
    with pytest.raises(MetaError, match=r"empty\.yml: expected a mapping with a non-empty 'datasets' list"):
        load_meta(str(empty))


# --- sampling strategies ------------------------------------------------------------------------


def test_all_first_and_end(tmp_path: Path) -> None:
    _numbered(tmp_path / "a.jsonl", 10)
    meta = tmp_path / "b.json"
    meta.write_text(json.dumps([{"image_path": "x.png", "caption": c} for c in "xyz"]))
    mix = _mix(
        tmp_path / "mix.yaml",
        "{json_path: a.jsonl, sampling_strategy: 'first:3'}",
        "{json_path: a.jsonl, sampling_strategy: 'end:2'}",
        "{json_path: b.json}",
        "{json_path: b.json, sampling_strategy: all}",
        "{json_path: a.jsonl, sampling_strategy: 'first:20%'}",
        "{json_path: a.jsonl, sampling_strategy: 'end:50'}",
    )
    assert _captions(load_meta(mix)) == (
        ["0", "1", "2"] + ["8", "9"] + list("xyz") + list("xyz") + ["0", "1"] + [str(i) for i in range(10)]
    )


def test_random_is_reproducible_from_the_seed(tmp_path: Path) -> None:
    _numbered(tmp_path / "a.jsonl", 100)
    mix = _mix(tmp_path / "mix.yaml", "{json_path: a.jsonl, sampling_strategy: 'random:10'}")
    picked = _captions(load_meta(mix, seed=1))
    assert len(picked) == 10 and len(set(picked)) == 10
    assert picked == sorted(picked, key=int), "random picks keep file order"
    assert picked == _captions(load_meta(mix, seed=1))
    assert picked != _captions(load_meta(mix, seed=2))


def test_random_percent_rounds_up_and_entries_draw_independently(tmp_path: Path) -> None:
    _numbered(tmp_path / "a.jsonl", 25)
    mix = _mix(
        tmp_path / "mix.yaml",
        "{json_path: a.jsonl, sampling_strategy: 'random:10%'}",
        "{json_path: a.jsonl, sampling_strategy: 'random:10%'}",
    )
    records = _captions(load_meta(mix, seed=0))
    assert len(records) == 6
    assert records[:3] != records[3:]


def test_parse_sampling_strategy() -> None:
    assert parse_sampling_strategy("all") == SamplingStrategy("all")
    assert parse_sampling_strategy("first:5") == SamplingStrategy("first", count=5)
    assert parse_sampling_strategy("end:0") == SamplingStrategy("end", count=0)
    assert parse_sampling_strategy("random:12.5%") == SamplingStrategy("random", percent=12.5)
    assert SamplingStrategy("random", percent=12.5).size(9) == 2
    assert SamplingStrategy("first", count=50).size(9) == 9
    for bad in ("random", "all:3", "random:-1", "random:1.5", "random:101%", "sometimes:3", "first:%"):
        with pytest.raises(ValueError, match="bad sampling_strategy"):
            parse_sampling_strategy(bad)
