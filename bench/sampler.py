"""Sampler speed against the original SimpleAR method, measured in one run on the same model and prompts.

(a) original: transformers `generate` with the original CFG logits processor, which runs a second forward of
    the unconditional prompt every step; (b) our sampler; (c) our sampler with CUDA graphs (GPU only);
(d) speculative Jacobi decoding. Prints ms per decode step, images/s, the ratio to (a), and a JSON line last; on
a GPU also the share of greedy codes (c) and (b) agree on (bucketed attention and padded prompts change the
float summation order, so sampled codes of a near-uniform random model part ways after a flip), and peak memory.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from bench_output import emit
from transformers import LogitsProcessor, LogitsProcessorList

from simplear.config import PRESETS, SamplingConfig, get_preset
from simplear.model.prompt import negative_prompt, t2i_prompt
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.sampling.sampler import Sampler

PROMPT = "a red circle left of a blue square on a white table, photographed in soft light"


class OriginalCFG(LogitsProcessor):
    """The original `CFGLogits`: log-softmax, an unconditional forward per step with its own cache, mix."""

    def __init__(self, scale: float, uncond_ids: torch.Tensor, lm: torch.nn.Module) -> None:
        self.scale, self.uncond_ids, self.lm, self.out = scale, uncond_ids, lm, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = F.log_softmax(scores, dim=-1)
        if self.out is None:
            self.out = self.lm(self.uncond_ids, use_cache=True)
        else:
            self.out = self.lm(input_ids[:, -1:], use_cache=True, past_key_values=self.out.past_key_values)
        uncond = F.log_softmax(self.out.logits[:, -1], dim=-1)
        return self.scale * (scores - uncond) + uncond


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_original(model: SimpleARModel, batch: int, steps: int, cfg: float) -> float:
    """Seconds per decode step of the original method."""
    device = model.lm.device
    cond, uncond = model.encode_prompts([t2i_prompt(PROMPT), negative_prompt()])
    cond_ids = torch.tensor([cond] * batch, device=device)
    uncond_ids = torch.tensor([uncond] * batch, device=device)

    def run(n: int) -> None:
        model.lm.generate(
            cond_ids, attention_mask=torch.ones_like(cond_ids),
            logits_processor=LogitsProcessorList([OriginalCFG(cfg, uncond_ids, model.lm)]),
            do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=n, min_new_tokens=n,
            use_cache=True, pad_token_id=model.tokenizer.pad_token_id,
        )

    run(min(steps, 8))
    sync(device)
    start = time.perf_counter()
    run(steps)
    sync(device)
    return (time.perf_counter() - start) / steps


def time_ours(sampler: Sampler, requests: list[Request], codes: int, sjd: bool) -> tuple[float, float | None]:
    """Seconds per generated code (and SJD's mean accepted codes per forward pass)."""
    def run() -> float | None:
        if sjd:
            return sampler.generate_sjd(requests, codes)[1].mean_accepted_per_step
        sampler.generate(requests, codes)
        return None

    run()
    sync(sampler.device)
    start = time.perf_counter()
    accepted = run()
    sync(sampler.device)
    return (time.perf_counter() - start) / codes, accepted


def main() -> None:
    """Run every method for each batch size and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--resolution", type=int, help="default: the preset's")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--baseline-steps", type=int, default=256, help="steps timed for the slow original method")
    parser.add_argument("--cfg-scale", type=float, default=6.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    preset = get_preset(args.preset)
    resolution = args.resolution or preset.vision.resolution
    codes = (resolution // preset.vision.downsample) ** 2
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    model = SimpleARModel.random_init(preset, dtype=dtype)
    model.lm.to(device)
    torch.set_grad_enabled(False)

    methods = {"ours": Sampler(model, cuda_graphs=False)}
    if device.type == "cuda":
        methods["ours+cuda_graphs"] = Sampler(model, cuda_graphs=True)
    results, greedy_agreement = [], {}
    print(f"{'batch':>5} {'method':<18} {'ms/step':>9} {'images/s':>9} {'vs original':>11}")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        base = time_original(model, batch, min(args.baseline_steps, codes), args.cfg_scale)
        rows = [("original", base, None)]
        requests = [Request(PROMPT, SamplingConfig(cfg_scale=args.cfg_scale, seed=i)) for i in range(batch)]
        for name, sampler in methods.items():
            rows.append((name, *time_ours(sampler, requests, codes, sjd=False)))
        rows.append(("ours+sjd", *time_ours(methods["ours"], requests, codes, sjd=True)))
        if device.type == "cuda":
            greedy = [Request(PROMPT, SamplingConfig(cfg_scale=args.cfg_scale, temperature=0.0)) for _ in range(batch)]
            agree = (methods["ours"].generate(greedy, codes) == methods["ours+cuda_graphs"].generate(greedy, codes))
            greedy_agreement[batch] = float(agree.float().mean())
            print(f"{batch:>5} greedy codes equal between CUDA graphs and eager: {greedy_agreement[batch]:.4f}")
        for name, seconds, accepted in rows:
            row = {"batch": batch, "method": name, "ms_per_step": seconds * 1e3,
                   "images_per_s": batch / (seconds * codes), "ratio_vs_original": base / seconds}
            if accepted is not None:
                row["mean_accepted_per_step"] = accepted
            results.append(row)
            extra = f"  ({accepted:.2f} codes/forward)" if accepted is not None else ""
            print(f"{batch:>5} {name:<18} {row['ms_per_step']:>9.3f} {row['images_per_s']:>9.3f} "
                  f"{row['ratio_vs_original']:>10.2f}x{extra}")

    best = "ours+cuda_graphs" if device.type == "cuda" else "ours"
    first = results[0]["batch"]
    speedup = next(r["ratio_vs_original"] for r in results if r["batch"] == first and r["method"] == best)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    summary = {
        "bench": "sampler", "device": name, "preset": preset.name, "resolution": resolution,
        "codes_per_image": codes, "dtype": str(dtype), "cfg_scale": args.cfg_scale,
        "baseline_steps_timed": min(args.baseline_steps, codes),
        "results": results, "speedup_vs_original": speedup,
    }
    if device.type == "cuda":
        summary["greedy_codes_equal_graphs_vs_eager"] = greedy_agreement
        summary["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    emit(summary, args.out)


if __name__ == "__main__":
    main()
