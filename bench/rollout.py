"""Rollout throughput of `simplear rollout-server`: vLLM engine against the torch sampler, and one weight push.

Both engines run as real servers on 127.0.0.1 (the vLLM one with .venv-vllm's Python) and are driven through
HttpRolloutClient, as the GRPO trainer drives them: one /generate of `--images` CFG images (groups of `--n`
seeds per prompt) at the preset's resolution, timed after a warm-up. A weight push is timed as the trainer sees
it (save to the store + server reload) and as the server's reload alone. Last, 40 CFG pairs are posted from 8
threads with random gaps to the vLLM engine with the pair scheduler and with vLLM's own scheduler, counting the
pairs each fails for decoding apart. Prints a table and, last, one JSON line.
GPU: `bench/rollout.py --preset 0.5B --images 64` (1024 px = 4096 codes per image).
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import threading
import time
from pathlib import Path

import requests
import torch
from bench_output import emit

from simplear.config import PRESETS, SamplingConfig, get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.sampling.batch import Request
from simplear.store import Store
from simplear.train.rollout.client import HttpRolloutClient
from simplear.train.rollout.server import RolloutServerProcess

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("a red circle left of a blue square", "three green crosses on a white table", "a photo of a cat",
           "two yellow triangles above a black square")


def time_rollouts(client: HttpRolloutClient, requests_: list[Request], num_codes: int) -> float:
    """Images per second of one rollout call, after a small warm-up call."""
    client.generate(requests_[:2], min(num_codes, 16))
    start = time.perf_counter()
    client.generate(requests_, num_codes)
    return len(requests_) / (time.perf_counter() - start)


def time_push(client: HttpRolloutClient, model: SimpleARModel, store: Store, scratch: Path) -> dict:
    """Seconds of one push through the client (save + reload) and of the server's reload of a saved checkpoint."""
    start = time.perf_counter()
    client.push_weights(model)
    push_s = time.perf_counter() - start
    saved = scratch / "saved-policy"
    start = time.perf_counter()
    model.save(saved, store)
    save_s = time.perf_counter() - start
    answer = requests.post(f"{client.base_url}/weights", json={"uri": str(saved)}, timeout=3600).json()
    return {"push_s": push_s, "save_s": save_s, "reload_s": answer["seconds"]}


def split_pairs_under_load(url: str, pairs: int = 40, threads: int = 8) -> int:
    """CFG pairs the server failed for decoding apart, out of `pairs` posted from `threads` threads."""
    failed: list[int] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        for k in range(pairs // threads):
            time.sleep(rng.uniform(0.0, 0.05))
            body = {"prompts": [f"shape {index} {k}"], "num_codes": 32, "cfg_scale": 4.0, "seed": 100 * index + k}
            response = requests.post(f"{url}/generate", json=body, timeout=600)
            if response.status_code == 500 and "lockstep" in response.text:
                failed.append(1)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return len(failed)


def server(
    engine: str, model_dir: Path, device: str, vllm_python: Path, scheduler: str = "pair"
) -> RolloutServerProcess:
    """A started rollout server of one engine."""
    args = ["--engine", engine, "--device", device, "--model", str(model_dir)]
    if engine == "vllm":
        return RolloutServerProcess([*args, "--vllm-scheduler", scheduler], python=vllm_python,
                                    startup_timeout_s=900).launch().wait_ready()
    return RolloutServerProcess(args, startup_timeout_s=900).launch().wait_ready()


def main() -> None:
    """Run both engines, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--resolution", type=int, help="default: the preset's")
    parser.add_argument("--images", type=int, default=32, help="images in the timed rollout call")
    parser.add_argument("--n", type=int, default=4, help="images per prompt (GRPO group size)")
    parser.add_argument("--cfg-scale", type=float, default=6.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args()

    preset = get_preset(args.preset)
    resolution = args.resolution or preset.vision.resolution
    num_codes = (resolution // preset.vision.downsample) ** 2
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    requests_ = [Request(PROMPTS[(k // args.n) % len(PROMPTS)], SamplingConfig(cfg_scale=args.cfg_scale, seed=k))
                 for k in range(args.images)]
    results: dict[str, dict] = {}
    store = Store()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        scratch = Path(tmp)
        model = SimpleARModel.random_init(preset, seed=0, dtype=dtype)
        model.save(scratch / "initial", store)
        for engine in ("torch", "vllm"):
            process = server(engine, scratch / "initial", args.device, Path(args.vllm_python))
            try:
                client = HttpRolloutClient(process.url, store, str(scratch / f"pushed-{engine}"), timeout_s=3600)
                results[engine] = {"images_per_s": time_rollouts(client, requests_, num_codes),
                                   **time_push(client, model, store, scratch)}
            finally:
                process.stop()
            row = results[engine]
            print(f"{engine:<6} {row['images_per_s']:>9.3f} images/s   push {row['push_s']:.3f} s"
                  f"   reload {row['reload_s']:.3f} s", flush=True)
        splits = {}
        for scheduler in ("pair", "vllm"):
            process = server("vllm", scratch / "initial", args.device, Path(args.vllm_python), scheduler=scheduler)
            try:
                splits[scheduler] = split_pairs_under_load(process.url)
            finally:
                process.stop()
            print(f"{scheduler} scheduler: {splits[scheduler]} of 40 CFG pairs split under staggered load", flush=True)

    summary = {
        "bench": "rollout", "device": torch.cuda.get_device_name() if args.device.startswith("cuda")
        else platform.processor() or "cpu", "preset": preset.name, "weights": "random", "resolution": resolution,
        "codes_per_image": num_codes, "images": args.images, "group_size": args.n, "cfg_scale": args.cfg_scale,
        "dtype": str(dtype), "torch": results["torch"], "vllm": results["vllm"],
        "speedup_vllm_vs_torch": results["vllm"]["images_per_s"] / results["torch"]["images_per_s"],
        "pairs_split_of_40": {"pair_scheduler": splits["pair"], "vllm_scheduler": splits["vllm"]},
    }
    emit(summary, args.out)


if __name__ == "__main__":
    main()
