"""`simplear tokenize`: exact codes and captions, recorded bad images, ranks, resume after SIGKILL, local and S3."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FakeCosmosEncoder, write_fake_cosmos
from PIL import Image

from simplear.cli import main
from simplear.config import StoreSettings, TokenizeConfig, get_preset
from simplear.data.image_prep import ImageRejected, prepare_image, resample_for
from simplear.data.shapes import make_dataset
from simplear.data.shapes.scene import render_cells
from simplear.data.tokenize.manifest import RanksNotFinished
from simplear.data.tokenize.ranks import RunOptions, run_tokenize
from simplear.data.tokenize.shards import decode_shard, errors_uri, shard_uri
from simplear.s3_server import EmbeddedS3
from simplear.store import ArtifactNotFound, SettingsChanged, Store, canonical, is_s3, join
from simplear.vision.base import pil_to_tensor

TINY = get_preset("tiny").vision
RED = (230, 25, 75)
QUIET = RunOptions(progress=False, poll_s=0.1)
MAIN_LAYOUT = [
    *["good", "good", "good", "good"],
    *["wide", "corrupt", "string", "good"],
    *["missing", "small", "text", "corrupt"],  # a shard of bad images only
    *["good"] * 6,
]
SLOW_LAYOUT = ["good", "good"] + ["big"] * 14 + ["missing", "corrupt"] + ["big"] * 6 + ["small", "big"]
REASONS = {"corrupt": "corrupt: ", "text": "not an image: ", "missing": "missing: ", "small": "too small: "}
BAD_FILES = {"corrupt": "bad/corrupt.png", "text": "bad/notes.txt", "missing": "bad/missing.png"}


@dataclass
class Target:
    """Where a test's data and output live: a Store, a data root URI, and the environment subprocesses need."""

    store: Store
    root: str
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """A local directory, or a fresh bucket on the session's real S3 server."""
    if request.param == "local":
        return Target(Store(StoreSettings()), str(tmp_path / "store"))
    server: EmbeddedS3 = request.getfixturevalue("s3_server")
    store, bucket = request.getfixturevalue("s3_store")
    return Target(store, bucket, server.env())


@dataclass
class Expected:
    """What tokenizing a meta file must give: codes and captions per tokenized index, reason prefix per error."""

    meta: str
    tokens: dict[int, tuple[np.ndarray, str, str]]
    errors: dict[int, str]


def _png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _wide(pixels: np.ndarray) -> np.ndarray:
    """The image at twice the size, padded left and right with red to 3:2, so only a centre crop restores it."""
    doubled = pixels.repeat(2, axis=0).repeat(2, axis=1)
    pad = np.broadcast_to(np.array(RED, dtype=np.uint8), (doubled.shape[0], doubled.shape[1] // 4, 3))
    return np.concatenate([pad, doubled, pad], axis=1)


def _pixels(kind: str, image: np.ndarray) -> np.ndarray:
    """The image a layout kind stores for a shapes image: as is, 3:2 at twice the size, 32x larger, or halved."""
    if kind == "wide":
        return _wide(image)
    if kind == "small":
        return image[::2, ::2]
    scale = 32 if kind == "big" else 1
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def write_layout(target: Target, name: str, layout: list[str]) -> Expected:
    """Write images and a meta.jsonl (relative image paths) for a layout of record kinds; what they must become."""
    shapes = make_dataset(sum(kind not in BAD_FILES for kind in layout), seed=7)
    data = join(target.root, name)
    truncated = _png(shapes[0].image)
    target.store.write(join(data, BAD_FILES["corrupt"]), truncated[: len(truncated) // 2])
    target.store.write(join(data, BAD_FILES["text"]), b"not an image at all\n")
    entries, tokens, errors = [], {}, {}
    for index, kind in enumerate(layout):
        if kind in BAD_FILES:
            entries.append({"image_path": BAD_FILES[kind], "caption": f"bad image {index}"})
        else:
            record = shapes.pop()
            path = f"images/{index}.png"
            target.store.write(join(data, path), _png(_pixels(kind, record.image)))
            short, long = record.short_caption, record.long_caption
            if kind == "string":
                long = short
            caption = short if kind == "string" else {"short": short, "long": long}
            entries.append({"image_path": path, "caption": caption})
            tokens[index] = (render_cells(record.objects), short, long)
        if kind in REASONS:
            errors[index] = REASONS[kind]
    meta = join(data, "meta.jsonl")
    target.store.write(meta, "".join(json.dumps(entry) + "\n" for entry in entries).encode())
    return Expected(meta, tokens, errors)


def _config(meta: str, output: str, shard_size: int, **overrides: object) -> TokenizeConfig:
    """A tiny-preset tokenize config."""
    return TokenizeConfig(meta=meta, output=output, vision=TINY, shard_size=shard_size, **overrides)


def _files(store: Store, root: str) -> dict[str, bytes]:
    """Every file under a dataset root by relative path (manifest excluded)."""
    prefix = canonical(root) + "/"
    uris = [uri for uri in store.list(root) if not uri.endswith("/manifest.json")]
    return {uri[len(prefix) :]: store.read(uri) for uri in uris}


def _decoded(files: dict[str, bytes]) -> dict[int, tuple[np.ndarray, str, str]]:
    """Codes and captions per meta index over every shard file."""
    out = {}
    for path, data in files.items():
        if path.startswith("tokens/"):
            for record in decode_shard(data):
                out[record.index] = (record.codes.numpy(), record.short, record.long)
    return out


def _errors(files: dict[str, bytes]) -> dict[int, str]:
    """Reason per meta index over every errors file."""
    errors_files = [data for path, data in files.items() if path.startswith("errors/")]
    lines = [json.loads(line) for data in errors_files for line in data.splitlines()]
    return {line["index"]: line["reason"] for line in lines}


def _cli(meta: str, output: str, *flags: str) -> list[str]:
    """The command line of one `simplear tokenize` process."""
    command = [sys.executable, "-m", "simplear.cli", "tokenize", "--meta", meta, "--output", output]
    return [*command, "--no-progress", *flags]


def _env(target: Target, **extra: str) -> dict[str, str]:
    """A subprocess environment reaching the target's store, with extra variables."""
    return {**os.environ, **target.env, **extra}


# --- a clean run ---------------------------------------------------------------------------------


def test_clean_run_gives_exact_codes_captions_and_a_verifiable_manifest(target: Target, tmp_path: Path) -> None:
    expected = write_layout(target, "data", MAIN_LAYOUT)
    output = join(target.root, "tokens-out")
    result = run_tokenize(_config(expected.meta, output, 4), QUIET, target.store)

    files = _files(target.store, output)
    decoded = _decoded(files)
    assert sorted(decoded) == sorted(set(expected.tokens) - set(expected.errors))
    for index, (cells, short, long) in decoded.items():
        want_cells, want_short, want_long = expected.tokens[index]
        np.testing.assert_array_equal(cells, want_cells, err_msg=f"record {index}")
        assert (short, long) == (want_short, want_long)
    assert decoded[6][1] == decoded[6][2], "a single string caption serves as short and long"

    manifest = target.store.read_manifest(output)
    assert manifest == result.manifest
    assert manifest["tokens"] == {
        "meta": canonical(expected.meta),
        "num_meta_records": 18,
        "shard_size": 4,
        "resolution": 64,
        "grid": 16,
        "min_size": 64,
        "vision": "palette",
        "codebook_size": 16,
        "vision_checkpoint": None,
        "seed": 0,
        "num_records": 13,
        "num_errors": 5,
        "num_shards": 4,
        "shards": [0, 1, 3, 4],
    }
    assert [entry["path"] for entry in manifest["files"]] == sorted(files)
    downloaded = target.store.get_artifact(output, tmp_path / "download")
    assert downloaded == manifest
    assert (tmp_path / "download" / "tokens" / "shard-00000.safetensors").read_bytes() == files[
        "tokens/shard-00000.safetensors"
    ]


def test_bad_images_are_recorded_with_reasons_and_counted(target: Target) -> None:
    expected = write_layout(target, "data", MAIN_LAYOUT)
    output = join(target.root, "tokens-out")
    result = run_tokenize(_config(expected.meta, output, 4), QUIET, target.store)

    files = _files(target.store, output)
    reasons = _errors(files)
    assert sorted(reasons) == sorted(expected.errors)
    for index, prefix in expected.errors.items():
        assert reasons[index].startswith(prefix), (index, reasons[index])
    assert reasons[9] == "too small: 32x32, short edge 32 px < 64 px"
    assert "truncated" in reasons[5]
    lines = [json.loads(line) for line in files["errors/shard-00002.jsonl"].splitlines()]
    assert [line["image_path"] for line in lines] == [
        join(expected.meta.rsplit("/", 1)[0], path)
        for path in ("bad/missing.png", "images/9.png", "bad/notes.txt", "bad/corrupt.png")
    ]
    assert "tokens/shard-00002.safetensors" not in files, "an all-errors shard has no shard file"
    summary = json.loads(files["ranks/rank-00000.json"])
    assert summary["empty_shards"] == [2]
    assert (summary["num_records"], summary["num_errors"]) == (13, 5)
    assert (result.num_records, result.num_errors) == (13, 5)
    assert result.manifest is not None and result.manifest["tokens"]["num_errors"] == 5


def test_a_complete_dataset_is_left_as_it_is(tmp_path: Path) -> None:
    target = Target(Store(StoreSettings()), str(tmp_path))
    expected = write_layout(target, "data", MAIN_LAYOUT)
    output = str(tmp_path / "out")
    run_tokenize(_config(expected.meta, output, 4), QUIET, target.store)
    before = {path: os.stat(path).st_ino for path in target.store.list(output)}
    again = run_tokenize(_config(expected.meta, output, 4), QUIET, target.store)
    assert (again.shards_tokenized, again.shards_skipped) == (0, 0)
    assert again.manifest == target.store.read_manifest(output)
    assert {path: os.stat(path).st_ino for path in target.store.list(output)} == before


# --- ranks and resume ----------------------------------------------------------------------------


def test_two_rank_processes_write_the_same_shards_as_one(target: Target) -> None:
    expected = write_layout(target, "data", MAIN_LAYOUT)
    single = join(target.root, "one-rank")
    run_tokenize(_config(expected.meta, single, 4), QUIET, target.store)
    double = join(target.root, "two-ranks")
    processes = [
        subprocess.Popen(
            _cli(expected.meta, double, "--shard-size", "4", "--device", "cpu"),
            env=_env(target, RANK=str(rank), WORLD_SIZE="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (1, 0)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs

    one, two = _files(target.store, single), _files(target.store, double)
    data_files = {path for path in one if path.startswith(("tokens/", "errors/"))}
    assert {path for path in two if path.startswith(("tokens/", "errors/"))} == data_files
    assert all(one[path] == two[path] for path in data_files), "same shard and errors bytes"
    rank_1 = json.loads(two["ranks/rank-00001.json"])
    assert [entry["shard"] for entry in rank_1["shards"]] == [1, 3]
    manifest_one, manifest_two = target.store.read_manifest(single), target.store.read_manifest(double)
    assert manifest_two["tokens"] == manifest_one["tokens"]
    assert sorted(entry["path"] for entry in manifest_two["files"]) == sorted(two)
    assert re.search(r"rank 1/2 done: 2 shards tokenized, 0 skipped, 7 records, 1 errors, [\d.]+ images/s", outputs[0])


def test_killed_run_resumes_and_ends_like_a_clean_run(target: Target, tmp_path: Path) -> None:
    expected = write_layout(target, "slow", SLOW_LAYOUT)
    clean = join(target.root, "clean")
    run_tokenize(_config(expected.meta, clean, 2), QUIET, target.store)
    output = join(target.root, "killed")
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(
            _cli(expected.meta, output, "--shard-size", "2", "--workers", "1", "--device", "cpu"),
            env=_env(target),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not target.store.exists(shard_uri(output, 0)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()

    with pytest.raises(ArtifactNotFound):
        target.store.get_artifact(output, tmp_path / "incomplete")
    written = [shard for shard in range(13) if target.store.exists(shard_uri(output, shard))]
    assert 0 < len(written) < 12, f"the kill should land part-way, got shards {written}"
    inodes = {} if is_s3(output) else {s: os.stat(shard_uri(output, s)).st_ino for s in written}
    all_errors_done = target.store.exists(errors_uri(output, 8))  # shard 8 holds only bad images

    resumed = run_tokenize(_config(expected.meta, output, 2), QUIET, target.store)
    assert resumed.shards_skipped == len(written) + all_errors_done
    assert resumed.shards_skipped + resumed.shards_tokenized == 13
    assert all(os.stat(shard_uri(output, s)).st_ino == inode for s, inode in inodes.items()), "skipped, not rewritten"
    assert _files(target.store, output) == _files(target.store, clean)
    assert target.store.read_manifest(output)["files"] == target.store.read_manifest(clean)["files"]
    decoded = _decoded(_files(target.store, output))
    assert sorted(decoded) == sorted(set(expected.tokens) - set(expected.errors))
    for index, (cells, _, _) in decoded.items():
        np.testing.assert_array_equal(cells, expected.tokens[index][0], err_msg=f"record {index}")


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    target = Target(Store(StoreSettings()), str(tmp_path))
    expected = write_layout(target, "data", MAIN_LAYOUT)
    output = str(tmp_path / "out")
    run_tokenize(_config(expected.meta, output, 4), QUIET, target.store)
    with pytest.raises(SettingsChanged, match=r"shard_size: 4 there, 5 now.*same settings or choose a new --output"):
        run_tokenize(_config(expected.meta, output, 5), QUIET, target.store)


def test_rank_zero_names_the_ranks_it_waited_for(tmp_path: Path) -> None:
    target = Target(Store(StoreSettings()), str(tmp_path))
    expected = write_layout(target, "data", MAIN_LAYOUT)
    output = str(tmp_path / "out")
    options = RunOptions(rank=0, world_size=3, wait_timeout_s=0.3, poll_s=0.1, progress=False)
    with pytest.raises(RanksNotFinished, match=r"ranks \[1, 2\] of 3.*rank 1: no ranks/rank-00001.json yet"):
        run_tokenize(_config(expected.meta, output, 4), options, target.store)
    assert not target.store.artifact_exists(output)
    assert target.store.exists(join(output, "ranks/rank-00000.json")), "rank 0's own work is kept"


# --- image preparation ---------------------------------------------------------------------------


def test_a_larger_non_square_image_is_resized_and_centre_cropped() -> None:
    record = make_dataset(1, seed=3)[0]
    wide = _wide(record.image)
    assert wide.shape == (128, 192, 3)
    prepared = prepare_image(_png(wide), 64, 64, resample_for(TINY))
    np.testing.assert_array_equal(np.asarray(prepared), record.image)

    stripes = np.zeros((128, 256, 3), np.uint8)
    stripes[:, ::2] = 255
    cosmos = get_preset("0.5B").vision
    palette_result = np.asarray(prepare_image(_png(stripes), 64, 64, resample_for(TINY)))
    cosmos_result = np.asarray(prepare_image(_png(stripes), 64, 64, resample_for(cosmos)), dtype=float)
    assert set(np.unique(palette_result)) <= {0, 255}, "NEAREST keeps flat colours"
    assert cosmos_result.shape == (64, 64, 3)
    assert np.abs(cosmos_result[:, 4:-4] - 127.5).max() < 3, "LANCZOS filters what it cannot represent"


def test_min_size_zero_keeps_small_images_upscaled(tmp_path: Path) -> None:
    target = Target(Store(StoreSettings()), str(tmp_path))
    expected = write_layout(target, "data", MAIN_LAYOUT)
    output = str(tmp_path / "out")
    assert main(["tokenize", "--meta", expected.meta, "--output", output, "--shard-size", "4", "--min-size", "0"]) == 0
    files = _files(target.store, output)
    np.testing.assert_array_equal(_decoded(files)[9][0], expected.tokens[9][0])
    assert sorted(_errors(files)) == [5, 8, 10, 11]
    tokens = target.store.read_manifest(output)["tokens"]
    assert (tokens["min_size"], tokens["num_records"], tokens["num_errors"]) == (0, 14, 4)
    with pytest.raises(ImageRejected, match="too small: 32x32"):
        prepare_image(_png(np.zeros((32, 32, 3), np.uint8)), 64, 64, resample_for(TINY))


# --- the Cosmos path and the command line --------------------------------------------------------


def test_cosmos_preset_encodes_lanczos_resized_images_with_its_checkpoint(tmp_path: Path) -> None:
    write_fake_cosmos(tmp_path)
    record = make_dataset(1, seed=5)[0]
    stripes = np.zeros((128, 128, 3), np.uint8)
    stripes[:, ::2] = 255
    images = {"wide.png": _png(_wide(record.image)), "stripes.png": _png(stripes)}
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    meta = tmp_path / "meta.jsonl"
    meta.write_text("".join(json.dumps({"image_path": name, "caption": name}) + "\n" for name in images))
    output = str(tmp_path / "out")
    flags = ["--preset", "0.5B", "--resolution", "64", "--vision-checkpoint", str(tmp_path), "--device", "cpu"]
    assert main(["tokenize", "--meta", str(meta), "--output", output, *flags, "--no-progress"]) == 0

    store = Store(StoreSettings())
    tokens = store.read_manifest(output)["tokens"]
    assert (tokens["vision"], tokens["codebook_size"], tokens["grid"]) == ("cosmos", 64_000, 4)
    assert tokens["num_records"] == 2
    decoded = _decoded(_files(store, output))
    got = torch.stack([torch.from_numpy(decoded[index][0]) for index in range(2)])

    def encoded(resample: Image.Resampling) -> torch.Tensor:
        prepared = [prepare_image(data, 64, 64, resample) for data in images.values()]
        return FakeCosmosEncoder()(pil_to_tensor(prepared)[:, :, None])[0][:, 0]

    torch.testing.assert_close(got, encoded(Image.Resampling.LANCZOS))
    assert not torch.equal(got[1], encoded(Image.Resampling.NEAREST)[1]), "the stripes tell the resampling apart"


def test_cli_reports_invalid_settings_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    meta, output = str(tmp_path / "meta.jsonl"), str(tmp_path / "out")
    assert main(["tokenize", "--meta", meta, "--output", output, "--shard-size", "0"]) == 2
    assert capsys.readouterr().err == (
        "simplear tokenize: invalid settings:\n  shard_size: Input should be greater than 0\n"
    )
    assert main(["tokenize", "--meta", meta, "--output", output, "--resolution", "30"]) == 2
    assert "vision: Value error, resolution 30 is not a multiple of downsample 4" in capsys.readouterr().err
    assert main(["tokenize", "--meta", meta, "--output", output, "--preset", "0.5B"]) == 1
    assert "needs its checkpoint directory or URI (--vision-checkpoint)" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "two")
    assert main(["tokenize", "--meta", meta, "--output", output]) == 2
    assert capsys.readouterr().err == "simplear tokenize: RANK must be an integer, got 'two'\n"
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["tokenize", "--meta", meta, "--output", output]) == 1
    assert "rank 2 is outside world size 2" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(["tokenize", "--meta", meta, "--output", output]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert not os.path.exists(output), "nothing is written for a run that cannot start"


def test_config_json_carries_the_dataset_config_and_is_not_mixed_with_its_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config-json is a whole TokenizeConfig (as the pipeline step passes it): the run is the flags' run; a dataset
    flag beside it, or neither --config-json nor --meta / --output, is refused with one line."""
    layout = {"a.png": _png(make_dataset(1, seed=2)[0].image)}
    for name, data in layout.items():
        (tmp_path / name).write_bytes(data)
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"image_path": "a.png", "caption": "a"}) + "\n")
    by_flags, by_json = str(tmp_path / "flags"), str(tmp_path / "json")
    assert main(["tokenize", "--meta", str(meta), "--output", by_flags, "--shard-size", "7", "--no-progress"]) == 0
    config = TokenizeConfig(meta=str(meta), output=by_json, vision=get_preset("tiny").vision, shard_size=7)
    assert main(["tokenize", "--config-json", config.model_dump_json(), "--no-progress"]) == 0
    store = Store(StoreSettings())
    assert _files(store, by_flags).keys() == _files(store, by_json).keys()
    flags_records, json_records = _decoded(_files(store, by_flags)), _decoded(_files(store, by_json))
    assert flags_records.keys() == json_records.keys() == {0}
    assert np.array_equal(flags_records[0][0], json_records[0][0]) and flags_records[0][1:] == json_records[0][1:]
    capsys.readouterr()
    assert main(["tokenize", "--config-json", config.model_dump_json(), "--seed", "3"]) == 2
    assert "not both (--seed)" in capsys.readouterr().err
    assert main(["tokenize", "--meta", str(meta)]) == 2
    assert "--meta and --output are required" in capsys.readouterr().err
