"""`simplear generate` end to end: the command line writes images, a grid and a record, locally or to S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from simplear.config import get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.s3_server import EmbeddedS3
from simplear.store import Store


def _generate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "simplear.cli", "generate", "--preset", "tiny", "--random-init", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )


def test_generate_writes_pngs_grid_and_record(tmp_path: Path) -> None:
    """Two prompts x three images: six 64 px PNGs, a 3x2 grid and a record of settings and seeds."""
    done = _generate("--prompt", "a red circle", "--prompt", "two blue squares", "--n", "3", "--seed", "10",
                     "--cfg-scale", "4", "--top-k", "8", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    record = json.loads((out / "generation.json").read_text())
    assert [e["seed"] for e in record["images"]] == [10, 11, 12, 13, 14, 15]
    assert record["settings"]["cfg_scale"] == 4.0 and record["settings"]["top_k"] == 8
    assert record["timings"]["seconds_per_image"] > 0
    for entry in record["images"]:
        assert Image.open(out / entry["file"]).size == (64, 64)
    assert Image.open(out / "grid.png").size == (3 * 64, 2 * 64)


def test_generate_is_reproducible_and_sjd_greedy_matches(tmp_path: Path) -> None:
    """The same seed writes the same PNG bytes; greedy SJD writes the plain greedy image."""
    runs = {
        "a": ("--temperature", "0"),
        "b": ("--temperature", "0"),
        "sjd": ("--temperature", "0", "--sjd", "--sjd-window", "8"),
    }
    for name, extra in runs.items():
        done = _generate("--prompt", "a green cross", "--n", "1", *extra, "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
    png = {name: (tmp_path / name / "00000-00.png").read_bytes() for name in runs}
    assert png["a"] == png["b"] == png["sjd"]
    assert json.loads((tmp_path / "sjd" / "generation.json").read_text())["timings"]["sjd_mean_accepted_per_step"] >= 1


def test_generate_to_an_s3_uri(s3_server: EmbeddedS3) -> None:
    """With an s3:// output the images land in the store as one artifact."""
    s3_server.create_bucket("gen-out")
    done = _generate("--prompt", "a cross", "--n", "2", "--out", "s3://gen-out/run1", env=s3_server.env())
    assert done.returncode == 0, done.stderr
    store = Store(s3_server.settings())
    assert store.artifact_exists("s3://gen-out/run1")
    files = {f["path"] for f in store.read_manifest("s3://gen-out/run1")["files"]}
    assert files == {"00000-00.png", "00000-01.png", "grid.png", "generation.json"}


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    """Out-of-range sampling values and resolutions off the code grid end with a one-line message."""
    bad_top_p = _generate("--prompt", "x", "--top-p", "1.5", "--out", str(tmp_path / "x"))
    assert bad_top_p.returncode != 0 and "top_p" in bad_top_p.stderr and "Traceback" not in bad_top_p.stderr
    bad_res = _generate("--prompt", "x", "--resolution", "66", "--out", str(tmp_path / "y"))
    assert bad_res.returncode != 0 and "multiple of downsample" in bad_res.stderr
    assert "Traceback" not in bad_res.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_generate_from_a_saved_checkpoint_uses_its_visual_tokenizer(tmp_path: Path) -> None:
    """A checkpoint directory carries vision.json, so --model needs no preset or tokenizer flags."""
    model = SimpleARModel.random_init(get_preset("tiny"), seed=3)
    model.save(tmp_path / "ckpt")
    done = subprocess.run(
        [sys.executable, "-m", "simplear.cli", "generate", "--model", str(tmp_path / "ckpt"), "--prompt", "a cross",
         "--n", "1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out" / "00000-00.png").size == (64, 64)
