"""`simplear evaluate`: GenEval and DPG-Bench layouts, rank splitting, resume, and exact shapes scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import parser_options
from PIL import Image

from simplear.cli import main
from simplear.config import EvaluateConfig, SamplingConfig, get_preset
from simplear.data.shapes import make_eval_prompts, render_metadata
from simplear.eval.dpg_run import run_dpg
from simplear.eval.geneval_layout import PromptFileError, read_geneval_prompts, write_prompt_folder
from simplear.eval.geneval_run import run_geneval
from simplear.eval.protocols import SIMPLEAR_NEGATIVE_TEXT, SIMPLEAR_PREFIXES
from simplear.eval.shapes_scoring import score_shapes_run
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request, build_batch
from simplear.sampling.sampler import Sampler, Samples
from simplear.store import Store
from simplear.vision import PaletteTokenizer

PROMPTS = make_eval_prompts(1, seed=3)


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    """A random tiny model's sampler."""
    return Sampler(SimpleARModel.random_init(get_preset("tiny"), seed=0))


def _run(sampler: Sampler, out: Path, rank: int = 0, world: int = 1, score: bool = False) -> object:
    return run_geneval(sampler, PaletteTokenizer(), PROMPTS, str(out), 2, SamplingConfig(seed=5), 16, 8,
                       rank, world, score_shapes=score, progress=False, wait_timeout_s=5)


def test_geneval_layout_is_the_official_one(sampler: Sampler, tmp_path: Path) -> None:
    """NNNNN/metadata.jsonl holds the prompt's metadata; samples/NNNN.png and grid.png hold the images."""
    _run(sampler, tmp_path / "out")
    for i, metadata in enumerate(PROMPTS):
        folder = tmp_path / "out" / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == metadata
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png"]
        assert Image.open(folder / "grid.png").size == (128, 64)


def test_two_ranks_make_what_one_makes_and_a_rerun_resumes(sampler: Sampler, tmp_path: Path) -> None:
    """Ranks split the prompts; per-image seeds make the union equal one rank's run; complete folders are kept."""
    _run(sampler, tmp_path / "one")
    _run(sampler, tmp_path / "two", rank=1, world=2)
    assert not (tmp_path / "two" / "00000").exists() and (tmp_path / "two" / "00001").exists()
    _run(sampler, tmp_path / "two", rank=0, world=2)
    for i in range(len(PROMPTS)):
        for j in range(2):
            name = f"{i:05d}/samples/{j:04d}.png"
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()

    kept = tmp_path / "one" / "00000" / "samples" / "0000.png"
    before = kept.stat().st_mtime_ns
    (tmp_path / "one" / "00003" / "metadata.jsonl").unlink()
    _run(sampler, tmp_path / "one")
    assert kept.stat().st_mtime_ns == before
    assert (tmp_path / "one" / "00003" / "metadata.jsonl").exists()


def test_exact_scorer_gives_ground_truth_full_marks(tmp_path: Path) -> None:
    """Folders holding the rendered ground truth score 1.0 on every tag; blank images score 0."""
    store, rng = Store(), np.random.default_rng(0)
    for i, metadata in enumerate(PROMPTS):
        truth = Image.fromarray(render_metadata(metadata, rng).image)
        write_prompt_folder(store, str(tmp_path / "truth"), i, metadata, [truth, truth])
        write_prompt_folder(store, str(tmp_path / "blank"), i, metadata, [Image.new("RGB", (64, 64), "white")] * 2)
    truth_summary = score_shapes_run(store, str(tmp_path / "truth"), PROMPTS)
    assert truth_summary.overall == 1.0 and set(truth_summary.per_tag.values()) == {1.0}
    assert score_shapes_run(store, str(tmp_path / "blank"), PROMPTS).overall == 0.0
    lines = (tmp_path / "truth" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(PROMPTS) and json.loads(lines[0])["filename"] == "00000/samples/0000.png"
    assert json.loads((tmp_path / "truth" / "summary.json").read_text())["overall"] == 1.0


def test_rank_zero_scores_after_every_folder_exists(sampler: Sampler, tmp_path: Path) -> None:
    """Rank 0 times out naming missing folders until the other rank has written them, then scores."""
    with pytest.raises(TimeoutError, match="still missing"):
        _run(sampler, tmp_path / "out", rank=0, world=2, score=True)
    _run(sampler, tmp_path / "out", rank=1, world=2)
    summary = _run(sampler, tmp_path / "out", rank=0, world=2, score=True)
    assert set(summary.per_tag) == {p["tag"] for p in PROMPTS}


def test_dpg_writes_four_images_tiled(sampler: Sampler, tmp_path: Path) -> None:
    """Each <id>.txt becomes <id>.png with four images in a 2x2 tile."""
    run_dpg(sampler, PaletteTokenizer(), {"a1": "a red circle", "b2": "two crosses"}, str(tmp_path),
            SamplingConfig(), 16, 8, progress=False)
    assert Image.open(tmp_path / "a1.png").size == (128, 128) and (tmp_path / "b2.png").exists()


def test_bad_prompt_files_name_file_and_line(tmp_path: Path) -> None:
    """Broken JSON or a missing prompt is reported with its line; the CLI exits with one line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a circle", "tag": "x"}\n{"tag": "y"}\n')
    with pytest.raises(PromptFileError, match="bad.jsonl:2"):
        read_geneval_prompts(Store(), str(bad))
    done = subprocess.run(
        [sys.executable, "-m", "simplear.cli", "evaluate", "--prompts", str(bad), "--out", str(tmp_path / "o"),
         "--random-init"], capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert done.returncode != 0 and "bad.jsonl:2" in done.stderr and "Traceback" not in done.stderr


def test_a_rerun_with_other_settings_is_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policies: dict[str, Path]
) -> None:
    """Same settings resume (nothing redone); other images per prompt, CFG scale or model exit 1 naming the setting."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS[:2]))
    out = tmp_path / "out"
    base = ["evaluate", "--prompts", str(prompts), "--out", str(out), "--resolution", "16", "--no-progress",
            "--device", "cpu"]
    assert main([*base, "--random-init", "--images-per-prompt", "1"]) == 0
    kept = out / "00000" / "samples" / "0000.png"
    before = kept.stat().st_mtime_ns
    assert main([*base, "--random-init", "--images-per-prompt", "1"]) == 0
    assert kept.stat().st_mtime_ns == before, "a resume with the same settings redoes nothing"
    capsys.readouterr()
    for change, named in (
        (["--random-init", "--images-per-prompt", "2"], "images_per_prompt: 1 there, 2 now"),
        (["--random-init", "--images-per-prompt", "1", "--cfg-scale", "3"], "cfg_scale: 6.0 there, 3.0 now"),
        (["--model", str(policies["initial"]), "--images-per-prompt", "1"], "model: 'random-init:tiny' there"),
    ):
        assert main([*base, *change]) == 1
        (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("simplear evaluate")]
        assert error.startswith(f"simplear evaluate: error: {out} holds a simplear evaluate run with other settings")
        assert named in error, error
    assert kept.stat().st_mtime_ns == before and not (out / "00000" / "samples" / "0001.png").exists()


class RecordingSampler(Sampler):
    """A sampler that keeps every request it is asked to decode."""

    def __init__(self, model: SimpleARModel) -> None:
        super().__init__(model)
        self.requests: list[Request] = []

    def sample(self, requests: list[Request], num_codes: int, progress: bool = False) -> Samples:
        """Record, then sample."""
        self.requests.extend(requests)
        return super().sample(requests, num_codes, progress)


def test_simplear_protocol_prompts_as_upstream_reproducibly(tmp_path: Path) -> None:
    """Upstream's protocol (simpar/eval/model_t2i.py via scripts/eval/bench_geneval.sh and bench_dpg.sh).

    Per prompt: one random training prefix (PROMPTS_GEN) shared by its 4 images, an unconditional row of another
    random prefix + "Aerial view, aerial view, ...", CFG 6, temperature 1, top-k 64000, top-p 1; a `reprompt`
    replaces the prompt and metadata.jsonl keeps the entry. Seeded by (seed, prompt index): a rerun and a run
    split over two ranks write the same bytes.
    """
    assert len(SIMPLEAR_PREFIXES) == 20 and "" not in SIMPLEAR_PREFIXES and "a photo of" not in SIMPLEAR_PREFIXES
    assert (SIMPLEAR_PREFIXES[0], SIMPLEAR_PREFIXES[-1]) == ("A detailed digital painting of ",
                                                             "A high-tech sci-fi scene with ")
    model = SimpleARModel.random_init(get_preset("tiny"), seed=0)
    entries = make_eval_prompts(2, seed=4)
    entries[1] = {**entries[1], "reprompt": "a big red circle on a white background"}
    sampling = EvaluateConfig(prompts="p", out="o", random_init=True, protocol="simplear",
                              sampling=SamplingConfig(seed=9)).protocol_sampling()
    recorder = RecordingSampler(model)
    run_geneval(recorder, PaletteTokenizer(), entries, str(tmp_path / "one"), 4, sampling, 16, 8,
                progress=False, protocol="simplear")
    by_seed = {r.params.seed: r for r in recorder.requests}
    assert sorted(by_seed) == [9 + k for k in range(4 * len(entries))]
    prefixes = set()
    for i, entry in enumerate(entries):
        group = [by_seed[9 + 4 * i + j] for j in range(4)]
        caption = entry.get("reprompt", entry["prompt"])
        assert {(r.prompt, r.prefix, r.params.negative_prompt) for r in group} == {
            (caption, group[0].prefix, group[0].params.negative_prompt)}, "one prefix pair per prompt"
        assert group[0].prefix in SIMPLEAR_PREFIXES
        negative = group[0].params.negative_prompt
        assert negative[: -len(SIMPLEAR_NEGATIVE_TEXT)] in SIMPLEAR_PREFIXES and negative.endswith(
            "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
            "bad teeth, bad eyes, bad limbs, distortion")
        params = group[0].params
        assert (params.cfg_scale, params.temperature, params.top_k, params.top_p) == (6.0, 1.0, 64_000, 1.0)
        batch = build_batch(model, group[:1], torch.device("cpu"))
        rows = [batch.ids[k][batch.real[k]].tolist() for k in range(2)]
        assert rows == model.encode_prompts([f"<|t2i|>{group[0].prefix}{caption}<|soi|>", f"<|t2i|>{negative}<|soi|>"])
        assert json.loads((tmp_path / "one" / f"{i:05d}" / "metadata.jsonl").read_text()) == entry
        prefixes.add(group[0].prefix)
    assert len(prefixes) > 1, "prefixes are drawn per prompt"

    for rank in (1, 0):
        run_geneval(Sampler(model), PaletteTokenizer(), entries, str(tmp_path / "two"), 4, sampling, 16, 8, rank, 2,
                    progress=False, protocol="simplear")
    for i in range(len(entries)):
        for j in range(4):
            name = f"{i:05d}/samples/{j:04d}.png"
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()

    dpg = RecordingSampler(model)
    run_dpg(dpg, PaletteTokenizer(), {"a1": "a red circle"}, str(tmp_path / "dpg"), sampling, 16, 8, progress=False,
            protocol="simplear")
    assert len({(r.prefix, r.params.negative_prompt) for r in dpg.requests}) == 1 and len(dpg.requests) == 4
    assert dpg.requests[0].prefix in SIMPLEAR_PREFIXES


def test_simplear_protocol_on_the_command_line(tmp_path: Path) -> None:
    """`--protocol simplear` runs; a flag that contradicts the protocol is refused with one line."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS[:2]))
    base = [sys.executable, "-m", "simplear.cli", "evaluate", "--prompts", str(prompts), "--random-init",
            "--protocol", "simplear", "--no-progress", "--out"]

    def evaluate(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, str(tmp_path / "out"), *flags], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ))

    done = evaluate("--seed", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "out" / "00001" / "samples").iterdir())) == 4
    for flags, message in ((["--cfg-scale", "5"], "drop cfg_scale 5"), (["--negative-prompt", ""], "negative prompt"),
                           (["--images-per-prompt", "2"], "4 images per prompt")):
        done = evaluate(*flags)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_evaluate_flags_are_the_config_fields_and_json_carries_them_whole() -> None:
    """Every field of EvaluateConfig and of its sampling is a flag (simplear.config.flags); --config-json carries
    the whole config (as the pipeline step passes it) and given flags go on top; a config without exactly one model
    source is refused."""
    import argparse

    from simplear.config.flags import flag_name
    from simplear.eval.evaluate_command import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = set(parser_options(parser))
    fields = [name for name in [*EvaluateConfig.model_fields, *SamplingConfig.model_fields] if name != "sampling"]
    assert [name for name in fields if flag_name(name) not in options] == []
    whole = EvaluateConfig(prompts="p.jsonl", out="o", model="m", sampling=SamplingConfig(top_k=9, seed=4))
    config = config_from_args(parser.parse_args(["--config-json", whole.model_dump_json(), "--seed", "5"]))
    assert config == whole.model_copy(update={"sampling": whole.sampling.model_copy(update={"seed": 5})})
    for argv, message in ((["--prompts", "p", "--out", "o"], "give a model"),
                          (["--prompts", "p", "--out", "o", "--model", "m", "--random-init"], "and not both"),
                          (["--config-json", "[]"], "must be a mapping of EvaluateConfig fields")):
        with pytest.raises(ValueError, match=message):
            config_from_args(parser.parse_args(argv))
