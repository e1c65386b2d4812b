"""Serving throughput with and without dynamic batching, measured in one run over real HTTP.

Starts `simplear serve` twice on 127.0.0.1 with the same random-weight model: once batching (up to --max-batch
images per sampler call, --batch-window-ms window), once not (--max-batch 1). Against each, at every concurrency
level, that many client threads send single-image v1 requests until --requests-per-level are answered; it reports
images/s, p50/p95 latency and the mean sampler batch (from the server's metrics). The last line printed is one JSON
object whose `batching_speedup` is images/s with batching over without, at the highest concurrency.
With --codes-only the servers return visual codes and load no visual tokenizer (use it where the Cosmos decoder
checkpoint is missing, e.g. `--preset 0.5B --resolution 1024 --codes-only` on a GPU); the JSON says which.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import torch
from bench_output import emit

from simplear.config import PRESETS, get_preset
from simplear.serve.process import ServerProcess

PROMPTS = (
    "a red circle left of a blue square",
    "two green triangles above a yellow cross",
    "a small purple square on a white background",
    "three orange circles in a row",
)
HTTP_TIMEOUT_S = 3600


def sampler_calls(url: str) -> float:
    """Sampler calls the server has made (count of its batch-size histogram)."""
    text = requests.get(f"{url}/metrics", timeout=60).text
    match = re.search(r"^simplear_serve_batch_size_count (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def run_level(url: str, concurrency: int, total: int, resolution: int, seed0: int) -> dict:
    """`total` single-image requests from `concurrency` threads: images/s, latency percentiles, mean batch."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {"instances": [{"prompt": PROMPTS[i % len(PROMPTS)], "seed": seed0 + i,
                                       "resolution": resolution}]}
                start = time.perf_counter()
                response = session.post(f"{url}/v1/models/simplear:predict", json=body, timeout=HTTP_TIMEOUT_S)
                elapsed = time.perf_counter() - start
                with lock:
                    (latencies if response.status_code == 200 else failures).append(
                        elapsed if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                    )

    calls_before = sampler_calls(url)
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    calls = sampler_calls(url) - calls_before
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "requests": total,
        "images_per_s": total / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "sampler_calls": calls,
        "mean_batch": total / calls if calls else None,
    }


def bench_server(args: argparse.Namespace, batching: bool, resolution: int, levels: list[int]) -> list[dict]:
    """Start one server, warm it up, measure every concurrency level, stop it."""
    server_args = ["--random-init", "--preset", args.preset, "--resolutions", str(resolution),
                   "--queue-limit", "4096", "--deadline-s", str(HTTP_TIMEOUT_S),
                   "--max-prompt-tokens", "64"]
    server_args += (["--max-batch", str(args.max_batch), "--batch-window-ms", str(args.batch_window_ms)]
                    if batching else ["--max-batch", "1", "--batch-window-ms", "0"])
    if args.device:
        server_args += ["--device", args.device]
    if args.codes_only:
        server_args.append("--codes-only")
    if args.vision_checkpoint:
        server_args += ["--vision-checkpoint", args.vision_checkpoint]
    rows = []
    with ServerProcess(server_args, startup_timeout_s=1800) as server:
        run_level(server.url, max(levels), max(levels), resolution, seed0=10_000_000)
        for level in levels:
            row = {"batching": batching, **run_level(server.url, level, max(args.requests_per_level, level),
                                                   resolution, seed0=level * 100_000)}
            rows.append(row)
            mean = f"{row['mean_batch']:.1f}" if row["mean_batch"] else "-"
            print(f"{'on' if batching else 'off':>8} {level:>11} {row['images_per_s']:>9.3f} "
                  f"{row['p50_s']:>8.3f} {row['p95_s']:>8.3f} {mean:>10}", flush=True)
    return rows


def main() -> None:
    """Measure both servers and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--resolution", type=int, help="default: the preset's")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client thread counts")
    parser.add_argument("--requests-per-level", type=int, default=128, help="requests per level (at least its count)")
    parser.add_argument("--max-batch", type=int, default=32, help="images per sampler call with batching")
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    parser.add_argument("--device", help="server device (default: cuda when available)")
    parser.add_argument("--vision-checkpoint", help="Cosmos tokenizer directory or URI for presets that need it")
    parser.add_argument("--codes-only", action="store_true", help="measure code generation, no image decoding")
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args()

    preset = get_preset(args.preset)
    resolution = args.resolution or preset.vision.resolution
    levels = sorted(int(c) for c in args.concurrency.split(","))
    print(f"{'batching':>8} {'concurrency':>11} {'images/s':>9} {'p50 s':>8} {'p95 s':>8} {'mean batch':>10}")
    results = bench_server(args, True, resolution, levels) + bench_server(args, False, resolution, levels)
    top = max(levels)
    on, off = (next(r["images_per_s"] for r in results if r["batching"] is b and r["concurrency"] == top)
               for b in (True, False))
    cuda = torch.cuda.is_available() and (args.device or "cuda").startswith("cuda")
    summary = {
        "bench": "serve", "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "preset": preset.name, "resolution": resolution, "output": "codes" if args.codes_only else "png",
        "weights": "random", "max_batch": args.max_batch, "batch_window_ms": args.batch_window_ms,
        "route": "v1 predict, one image per request", "results": results, "batching_speedup": on / off,
    }
    emit(summary, args.out)


if __name__ == "__main__":
    main()
