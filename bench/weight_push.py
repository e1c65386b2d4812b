"""GRPO's weight push after an optimizer step: NCCL broadcast into the vLLM rollout server against the store reload.

Starts `simplear rollout-server --engine vllm --weight-transfer nccl` (with `--server-python`, the rollout role's
Python) on its own GPU, as the sidecar layout does, and pushes a policy of `--preset` from this process, the trainer,
`--pushes` times each way, as GRPO's rank 0 does:
- store: HttpRolloutClient's store push (save the checkpoint to `--store`, the server downloads and reloads it);
- nccl: NcclWeightPush (trl's VLLMClient design: one NCCL group, packed broadcast in the served dtype), the first
  push including the group's rendezvous.
NCCL puts one rank on each GPU, so it needs two: the trainer on the first visible GPU, the server on the second
(`--server-gpu`). Without two GPUs (or on CPU) only the store push is measured and the NCCL figure is null with the
reason. Prints the ratio store / nccl and, last, one JSON line.
GPU: `python bench/weight_push.py --preset 0.5B --server-python /opt/rollout/bin/python --out
bench/results/weight_push_gpu.json` in the train image (it holds vLLM's communicator).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_output import emit

from simplear.config import get_preset
from simplear.model.simplear_lm import SimpleARModel
from simplear.store import Store
from simplear.train.rollout.client import HttpRolloutClient
from simplear.train.rollout.server import RolloutServerProcess
from simplear.train.rollout.weight_sync import NcclWeightPush, module_layout, nccl_unavailable


def timed_pushes(push: object, model: SimpleARModel, pushes: int) -> list[float]:
    """Seconds of each of `pushes` pushes (the model nudged between them, as an optimizer step would)."""
    seconds = []
    for _ in range(pushes):
        with torch.no_grad():
            next(model.lm.parameters()).add_(1e-6)
        start = time.perf_counter()
        push(model)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    """Save the policy, start the server, time both pushes, print and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="0.5B")
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--server-python", default=os.environ.get("SIMPLEAR_ROLLOUT_PYTHON", ".venv-vllm/bin/python"))
    parser.add_argument("--server-gpu", default="1", help="CUDA device of the server (the trainer takes the first)")
    parser.add_argument("--store", help="where store pushes go (default: a temp dir; an s3:// URI measures MinIO)")
    parser.add_argument("--sync-port", type=int, default=51216)
    parser.add_argument("--out", help="also write the summary here")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    device = "cuda:0" if cuda else "cpu"
    model = SimpleARModel.random_init(get_preset(args.preset), seed=0)
    model.lm.to(device)
    params = sum(p.numel() for p in model.lm.parameters())
    with tempfile.TemporaryDirectory(prefix="simplear-push-") as tmp:
        initial = Path(tmp) / "initial"
        model.save(initial)
        server_env = {**os.environ, "CUDA_VISIBLE_DEVICES": args.server_gpu} if cuda else None
        server_args = ["--engine", "vllm", "--model", str(initial), "--weight-transfer", "nccl" if cuda else "store",
                       "--device", "cuda" if cuda else "cpu"]
        with RolloutServerProcess(server_args, python=args.server_python, startup_timeout_s=1800,
                                  env=server_env) as server:
            client = HttpRolloutClient(server.url, Store(), args.store or str(Path(tmp) / "pushed"), timeout_s=3600)
            health = client.health()
            store_s = timed_pushes(client.push_weights, model, args.pushes)
            why = nccl_unavailable(health)
            if why is None and torch.cuda.device_count() < 2 and args.server_gpu == "1":
                why = f"NCCL needs one GPU per rank; {torch.cuda.device_count()} visible here"
            nccl_s = None
            if why is None:
                push = NcclWeightPush(server.url, "127.0.0.1", args.sync_port, timeout_s=3600)
                nccl_s = timed_pushes(push.push, model, args.pushes)
    steady_store = statistics.median(store_s[1:] or store_s)
    steady_nccl = statistics.median(nccl_s[1:] or nccl_s) if nccl_s else None
    bytes_sent = sum(torch.finfo(getattr(torch, dtype)).bits // 8 * int(torch.tensor(shape).prod())
                     for dtype, shape in module_layout(model.lm).values())
    summary = {
        "bench": "weight_push", "preset": args.preset, "parameters": params, "checkpoint_bytes": bytes_sent,
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "store_s": [round(s, 3) for s in store_s], "store_median_s": round(steady_store, 3),
        "nccl_s": [round(s, 3) for s in nccl_s] if nccl_s else None,
        "nccl_median_s": round(steady_nccl, 3) if steady_nccl else None,
        "store_over_nccl": round(steady_store / steady_nccl, 2) if steady_nccl else None,
        "nccl_unavailable": why,
    }
    print(f"{args.preset} ({params / 1e6:.0f}M parameters): store push {steady_store:.2f} s"
          + (f", NCCL push {steady_nccl:.2f} s, ratio store/nccl {steady_store / steady_nccl:.1f}x" if steady_nccl
             else f"; NCCL not measured: {why}"))
    emit(summary, args.out)


if __name__ == "__main__":
    main()
