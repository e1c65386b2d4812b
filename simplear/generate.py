"""`simplear generate`: prompts to PNG images, a grid and a JSON record of settings, seeds and timings."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError
from tqdm import tqdm

from simplear.config import PRESETS, SamplingConfig, VisionConfig, get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler
from simplear.store import Store, is_s3
from simplear.vision import VisualTokenizer, load_visual_tokenizer
from simplear.vision.base import image_grid, tensor_to_pil


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
    sample_s = decode_s = 0.0
    accepted: list[float] = []
    for start in tqdm(range(0, len(jobs), job.batch_size), desc="generate", unit="batch", disable=not progress):
        chunk = jobs[start : start + job.batch_size]
        requests = [
            Request(prompt, job.sampling.model_copy(update={"seed": job.sampling.seed + p * job.n + j}))
            for p, prompt, j in chunk
        ]
        t0 = time.perf_counter()
        if job.sjd:
            codes, stats = sampler.generate_sjd(requests, grid * grid, window=job.sjd_window)
            accepted.append(stats.mean_accepted_per_step)
        else:
            codes = sampler.generate(requests, grid * grid, progress=progress)
        t1 = time.perf_counter()
        pictures = tensor_to_pil(tokenizer.decode(codes.view(-1, grid, grid)))
        decode_s += time.perf_counter() - t1
        sample_s += t1 - t0
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
        "timings": {"sample_s": sample_s, "decode_s": decode_s, "seconds_per_image": (sample_s + decode_s) / len(jobs)},
    }
    if accepted:
        record["timings"]["sjd_mean_accepted_per_step"] = sum(accepted) / len(accepted)
    (out_dir / "generation.json").write_text(json.dumps(record, indent=2))
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `simplear generate`."""
    defaults = SamplingConfig()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint directory or store URI (a Hugging Face SimpleAR directory)")
    source.add_argument("--random-init", action="store_true", help="random weights of --preset (no checkpoint)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model shape and visual tokenizer")
    parser.add_argument("--vision-checkpoint", help="Cosmos tokenizer directory or URI (encoder.jit/decoder.jit)")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", action="append", help="a caption; repeat for several")
    prompts.add_argument("--prompt-file", help="a text file with one caption per line")
    parser.add_argument("--n", type=int, default=4, help="images per prompt")
    parser.add_argument("--cfg-scale", type=float, default=defaults.cfg_scale)
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="0 keeps every code")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the first image; +1 per image")
    parser.add_argument("--negative-prompt", help="replaces the fixed negative prompt of the unconditional row")
    parser.add_argument("--resolution", type=int, help="pixels per side (default: the preset's)")
    parser.add_argument("--sjd", action="store_true", help="speculative Jacobi decoding")
    parser.add_argument("--sjd-window", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16, help="images decoded together")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True, help="output directory or store URI")


def run(args: argparse.Namespace) -> int:
    """Load or build the model, generate, write the images locally or to the store."""
    preset = get_preset(args.preset)
    try:
        sampling = SamplingConfig(
            cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            seed=args.seed, negative_prompt=args.negative_prompt,
        )
    except ValidationError as err:
        raise SystemExit(f"simplear generate: {err}") from None
    prompts = args.prompt or [line.strip() for line in Path(args.prompt_file).read_text().splitlines() if line.strip()]
    if not prompts or args.n < 1 or args.batch_size < 1:
        raise SystemExit("simplear generate: need at least one prompt, --n >= 1 and --batch-size >= 1")
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    if args.random_init:
        model = SimpleARModel.random_init(preset, seed=args.seed, dtype=dtype)
        model.lm.to(args.device)
    else:
        model = SimpleARModel.load(args.model, dtype=dtype, device=args.device)
    trained = model.vision or preset.vision
    try:
        vision = VisionConfig(**{**trained.model_dump(), "checkpoint": args.vision_checkpoint or trained.checkpoint,
                                 "resolution": args.resolution or trained.resolution})
    except ValidationError as err:
        raise SystemExit(f"simplear generate: {err}") from None
    tokenizer = load_visual_tokenizer(vision, device=args.device, encoder=False)
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
