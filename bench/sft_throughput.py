"""SFT throughput: tokens/s and model FLOPs utilisation of `simplear train --stage sft` at a preset's full length.

Writes a token dataset of random codes (the preset's grid at --resolution) whose captions are long enough that every
prompt is cut to exactly --prompt-tokens tokens (no condition dropout), so every sequence is prompt + codes tokens
(0.5B at 1024 px: 512 + 4096 = 4608). Runs the real `simplear train --stage sft` (DeepSpeed ZeRO-N, torchrun for
several ranks) from a saved random init of the preset and reads tokens/s from its metrics, averaged after the warm-up
steps.
FLOPs per token follow nanoGPT's estimate: 6 N + 12 L d S (N the weights of every matmul, lm_head included,
L layers, d hidden size, S sequence length). It prints MFU (the achieved FLOP/s over the device's bf16 dense peak)
and the ratio of tokens/s against the baseline it replaces, measured in the same run: the same training with
`--reduce-bucket-size 0`, transformers' 'auto' ZeRO bucket of hidden_size^2 gradient elements.
GPU: `bench/sft_throughput.py --preset 0.5B --resolution 1024 --zero-stage 3 --batch-size 4 --steps 20`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_output import emit

from simplear.config import PRESETS, get_preset
from simplear.data.tokenize.shards import TokenRecord, write_token_dataset
from simplear.model.simplear_lm import SimpleARModel
from simplear.store import Store

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}
CAPTION_WORDS = ("red", "circle", "left", "of", "a", "blue", "square", "above", "three", "green", "crosses")


def write_dataset(root: Path, records: int, grid: int, codebook: int, caption_words: int) -> None:
    """A complete token dataset (manifest last) of random codes [grid, grid] with long captions."""
    generator = torch.Generator().manual_seed(0)
    caption = " ".join(CAPTION_WORDS[i % len(CAPTION_WORDS)] for i in range(caption_words))
    rows = [TokenRecord(index=i, codes=torch.randint(codebook, (grid, grid), generator=generator),
                        short=caption, long=caption) for i in range(records)]
    write_token_dataset(Store(), str(root), rows, "synthetic", codebook)


def flops_per_token(model: SimpleARModel, sequence: int) -> float:
    """nanoGPT's training FLOPs per token: 6 x matmul weights + 12 x layers x hidden x sequence."""
    weights = sum(m.weight.numel() for m in model.lm.modules() if isinstance(m, torch.nn.Linear))
    config = model.lm.config
    return 6 * weights + 12 * config.num_hidden_layers * config.hidden_size * sequence


def peak_flops(requested: float | None) -> tuple[float | None, str]:
    """The device's peak FLOP/s (from --peak-tflops or the GPU's name) and the device's name."""
    if not torch.cuda.is_available():
        return (requested * 1e12 if requested else None), "cpu"
    name = torch.cuda.get_device_name(0)
    known = next((tflops for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)
    tflops = requested or known
    return (tflops * 1e12 if tflops else None), name


def train(data: Path, init: Path, out: Path, args: argparse.Namespace, reduce_bucket_size: int | None) -> list[dict]:
    """Run `simplear train --stage sft` from the checkpoint at init (None: TrainConfig's bucket); its metric rows."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks)] \
        if args.ranks > 1 else [sys.executable]
    command = [*launcher, "-m", "simplear.cli", "train", "--stage", "sft", "--init", "checkpoint",
               "--init-from", str(init), "--data", str(data), "--output", str(out),
               "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--zero-stage", str(args.zero_stage), "--p-drop-cond", "0",
               "--max-prompt-tokens", str(args.prompt_tokens),
               "--no-sample-short", "--logging-steps", "1", "--save-steps", str(args.steps), "--warmup-steps", "1",
               "--no-tensorboard", *(["--gradient-checkpointing"] if args.gradient_checkpointing else []),
               *([] if reduce_bucket_size is None else ["--reduce-bucket-size", str(reduce_bucket_size)])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"simplear train failed:\n{done.stderr[-4000:]}")
    return [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]


def timed_rates(rows: list[dict], sequence: int, args: argparse.Namespace) -> list[float]:
    """Tokens/s of a run's metric rows after the warm-up, checked to have trained `sequence`-token sequences."""
    seen = rows[-1]["tokens_seen"] / (rows[-1]["step"] * args.ranks * args.batch_size)
    if seen != sequence:
        raise SystemExit(f"sequences held {seen:g} tokens on average, not the {sequence} this bench assumes")
    return [row["tokens_per_second"] for row in rows if row["step"] > args.warmup_steps and row["tokens_per_second"]]


def main() -> None:
    """Write the dataset, train with both buckets, and print tokens/s, FLOPs per token, MFU and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--resolution", type=int, help="default: the preset's")
    parser.add_argument("--prompt-tokens", type=int, default=512, help="every prompt's length in tokens")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=5, help="first steps left out of the mean")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per rank per step")
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--zero-stage", type=int, choices=(2, 3), default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="device peak (bf16 dense); default: known GPUs' figure")
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args()
    if args.warmup_steps >= args.steps:
        raise SystemExit("--warmup-steps must be fewer than --steps")

    preset = get_preset(args.preset)
    resolution = args.resolution or preset.vision.resolution
    grid = resolution // preset.vision.downsample
    sequence = args.prompt_tokens + grid * grid
    with tempfile.TemporaryDirectory(prefix="simplear-sft-bench-") as work:
        model = SimpleARModel.random_init(preset)
        per_token = flops_per_token(model, sequence)
        model.save(Path(work) / "init")
        del model
        data = Path(work) / "tokens"
        write_dataset(data, records=max(64, args.steps * args.batch_size * args.ranks), grid=grid,
                      codebook=preset.vision.codebook_size, caption_words=4 * args.prompt_tokens)
        baseline = statistics.mean(timed_rates(train(data, Path(work) / "init", Path(work) / "auto", args, 0),
                                               sequence, args))
        timed = timed_rates(train(data, Path(work) / "init", Path(work) / "run", args, None), sequence, args)
    tokens_per_s = statistics.mean(timed)
    peak, device = peak_flops(args.peak_tflops)
    mfu = tokens_per_s * per_token / peak if peak else None
    print(f"{args.preset} at {resolution} px: {sequence} tokens per sequence, ZeRO-{args.zero_stage}, "
          f"{args.ranks} rank(s) x {args.batch_size}: {tokens_per_s:,.0f} tokens/s, "
          f"{tokens_per_s * per_token / 1e12:.2f} TFLOP/s" + (f", MFU {mfu:.1%}" if mfu is not None else "")
          + f"; {tokens_per_s / baseline:.2f}x the {baseline:,.0f} tokens/s of transformers' auto ZeRO bucket")
    emit({
        "bench": "sft_throughput", "device": device, "preset": args.preset, "resolution": resolution,
        "sequence_tokens": sequence, "zero_stage": args.zero_stage, "ranks": args.ranks,
        "batch_size": args.batch_size, "gradient_checkpointing": args.gradient_checkpointing,
        "steps_timed": len(timed), "tokens_per_s": tokens_per_s, "flops_per_token": per_token,
        "peak_flops": peak, "mfu": mfu, "tokens_per_s_auto_bucket": baseline, "speedup_vs_auto_bucket":
        tokens_per_s / baseline,
    }, args.out)


if __name__ == "__main__":
    main()
