"""`simplear generate`: prompts to PNG images, a grid and a JSON record of settings, seeds and timings."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from simplear.cli_args import add_model_arguments, add_sampling_arguments, model_from_args, sampling_from_args
from simplear.config import SamplingConfig
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler, sample_images
from simplear.store import Store, is_s3
from simplear.vision import VisualTokenizer
from simplear.vision.base import image_grid


@dataclass(frozen=True)
class GenerationJob:
    """What to generate: prompts, images per prompt, resolution, sampling and decoding choices."""

    prompts: list[str]
    n: int
    resolution: int
    sampling: SamplingConfig
    batch_size: int = 16
    sjd: bool = False
    sjd_window: int = 16


def generate_images(
    model: SimpleARModel, tokenizer: VisualTokenizer, job: GenerationJob, out_dir: Path, progress: bool = True
) -> dict:
    """Write `NNNNN-JJ.png` per image, `grid.png` (a row per prompt) and `generation.json`; return the record."""
    if job.resolution % tokenizer.downsample:
        raise ValueError(f"resolution {job.resolution} is not a multiple of the tokenizer's {tokenizer.downsample}")
    grid = job.resolution // tokenizer.downsample
    jobs = [(p, prompt, j) for p, prompt in enumerate(job.prompts) for j in range(job.n)]
    sampler = Sampler(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, entries = [], []
    elapsed = 0.0
    accepted: list[float] = []
    for start in tqdm(range(0, len(jobs), job.batch_size), desc="generate", unit="batch", disable=not progress):
        chunk = jobs[start : start + job.batch_size]
        requests = [
            Request(prompt, job.sampling.model_copy(update={"seed": job.sampling.seed + p * job.n + j}))
            for p, prompt, j in chunk
        ]
        t0 = time.perf_counter()
        pictures, mean_accepted = sample_images(
            sampler, tokenizer, requests, grid, job.sjd_window if job.sjd else None, progress=progress
        )
        elapsed += time.perf_counter() - t0
        if mean_accepted is not None:
            accepted.append(mean_accepted)
        for (p, prompt, j), request, picture in zip(chunk, requests, pictures, strict=True):
            name = f"{p:05d}-{j:02d}.png"
            picture.save(out_dir / name)
            images.append(picture)
            entries.append({"file": name, "prompt": prompt, "prompt_index": p, "seed": request.params.seed})
    image_grid(images, columns=job.n).save(out_dir / "grid.png")
    record = {
        "settings": {**job.sampling.model_dump(), "n": job.n, "resolution": job.resolution, "sjd": job.sjd,
                     "sjd_window": job.sjd_window if job.sjd else None, "batch_size": job.batch_size},
        "images": entries,
        "timings": {"seconds": elapsed, "seconds_per_image": elapsed / len(jobs)},
    }
    if accepted:
        record["timings"]["sjd_mean_accepted_per_step"] = sum(accepted) / len(accepted)
    (out_dir / "generation.json").write_text(json.dumps(record, indent=2))
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear generate`."""
    add_model_arguments(parser)
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", action="append", help="a caption; repeat for several")
    prompts.add_argument("--prompt-file", help="a text file with one caption per line")
    parser.add_argument("--n", type=int, default=4, help="images per prompt")
    add_sampling_arguments(parser)
    parser.add_argument("--sjd", action="store_true", help="speculative Jacobi decoding")
    parser.add_argument("--sjd-window", type=int, default=16)
    parser.add_argument("--out", required=True, help="output directory or store URI")


def run(args: argparse.Namespace) -> int:
    """Load or build the model, generate, write the images locally or to the store."""
    sampling = sampling_from_args("generate", args)
    prompts = args.prompt or [line.strip() for line in Path(args.prompt_file).read_text().splitlines() if line.strip()]
    if not prompts or args.n < 1 or args.batch_size < 1:
        raise SystemExit("simplear generate: need at least one prompt, --n >= 1 and --batch-size >= 1")
    model, tokenizer, vision = model_from_args("generate", args)
    if sampling.repetition_penalty is None:
        sampling = sampling.model_copy(update={"repetition_penalty": model.generation.repetition_penalty})
    job = GenerationJob(prompts=prompts, n=args.n, resolution=vision.resolution, sampling=sampling,
                        batch_size=args.batch_size, sjd=args.sjd, sjd_window=args.sjd_window)
    if is_s3(args.out):
        with tempfile.TemporaryDirectory(prefix="simplear-generate-") as tmp:
            record = generate_images(model, tokenizer, job, Path(tmp))
            Store().put_artifact(tmp, args.out)
    else:
        record = generate_images(model, tokenizer, job, Path(args.out))
    print(f"wrote {len(record['images'])} images and grid.png to {args.out} "
          f"({record['timings']['seconds_per_image']:.3f} s per image)")
    return 0
