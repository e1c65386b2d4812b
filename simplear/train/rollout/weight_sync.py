"""Weight sync from the trainer to the rollout server: the layout a push must match, the store push, the NCCL push.

The layout a push must match is each tensor's name, shape and dtype, as the served policy has them. The rollout
server reads it from its initial checkpoint (the safetensors header, no tensor loaded) with the dtype its
engine serves in; a push that announces anything else is refused before a byte is loaded, so the engine keeps serving
the weights it has. The trainer checks its own policy against the server's layout before it sends anything.

The store push works everywhere: the trainer saves the policy to the store; the previous push is removed.

The GPU push: after each optimizer step trainer rank 0 broadcasts the policy over NCCL to the rollout server. It
follows trl 1.16's VLLMClient against `vllm serve` (trl/generation/vllm_client.py: init_communicator,
update_named_params): rank 0 joins the server's vLLM workers in one NCCL group, world size = their count + 1, itself
rank 0 (rank_offset 1 for the workers), through vLLM's StatelessProcessGroup rendezvous on a TCPStore that rank 0
opens on its own address (127.0.0.1 beside a sidecar server, the pod IP for a pool server); each push announces the
tensors, then streams them packed (vLLM's packed_nccl_broadcast_producer) while the server's request receives them.
The server adds a prepare step before each broadcast: it checks the announced names, shapes and dtypes against the
policy it serves and refuses a mismatch before any NCCL traffic, so a bad push leaves the old weights serving.
Tensors are sent in the dtype the engine serves (bf16 on GPU), half the bytes of fp32 master weights.
NCCL needs CUDA on both ends; everywhere else, and as the fallback, weights go through the store (StoreWeightPush).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import torch

from simplear.model.simplear_lm import SimpleARModel
from simplear.store import MANIFEST, Store, is_s3, join, resolve_local

log = logging.getLogger(__name__)

# safetensors' dtype names -> torch's.
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
                      "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
FLOAT_DTYPES = frozenset({"float32", "bfloat16", "float16"})

Layout = dict[str, tuple[str, tuple[int, ...]]]


class WeightLayoutMismatch(ValueError):
    """A pushed policy does not have the served policy's tensors, shapes or dtypes."""


def checkpoint_layout(model_dir: Path) -> Layout:
    """name -> (dtype, shape) of every tensor in a checkpoint's *.safetensors files, from their headers."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no .safetensors file")
    layout: Layout = {}
    for path in files:
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                layout[name] = (SAFETENSORS_DTYPES.get(entry["dtype"], entry["dtype"]), tuple(entry["shape"]))
    return layout


def served_layout(model_dir: Path, dtype: str) -> Layout:
    """The checkpoint's tensors with the dtype the engine holds them in (what an NCCL push must send)."""
    return {name: (dtype, shape) for name, (_, shape) in checkpoint_layout(model_dir).items()}


def module_layout(module: torch.nn.Module) -> Layout:
    """name -> (dtype, shape) of a module's parameters (a tied head counted once, as its checkpoint stores it)."""
    return {name: (str(p.dtype).removeprefix("torch."), tuple(p.shape)) for name, p in module.named_parameters()}


def layout_problems(expected: Layout, pushed: Layout, exact_dtype: bool) -> list[str]:
    """What differs between the served layout and a pushed one: missing or unknown tensors, shapes, dtypes (the exact
    dtype for bytes on the wire; any float dtype for a checkpoint, which loading casts)."""
    problems = [f"missing {name}" for name in sorted(expected.keys() - pushed.keys())]
    problems += [f"unknown tensor {name}" for name in sorted(pushed.keys() - expected.keys())]
    for name in sorted(expected.keys() & pushed.keys()):
        (want_dtype, want_shape), (dtype, shape) = expected[name], pushed[name]
        if tuple(shape) != tuple(want_shape):
            problems.append(f"{name} has shape {list(shape)}, the served policy {list(want_shape)}")
        if (dtype != want_dtype) if exact_dtype else (dtype not in FLOAT_DTYPES):
            want = want_dtype if exact_dtype else " / ".join(sorted(FLOAT_DTYPES))
            problems.append(f"{name} is {dtype}, the served policy takes {want}")
    return problems


def check_layout(expected: Layout, pushed: Layout, exact_dtype: bool, what: str) -> None:
    """WeightLayoutMismatch naming the first problems of a push (what: e.g. "NCCL push", "checkpoint x")."""
    problems = layout_problems(expected, pushed, exact_dtype)
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise WeightLayoutMismatch(f"{what} does not match the served policy: {'; '.join(problems[:6])}{more}; "
                                   "the server keeps the weights it has")


def layout_to_json(layout: Layout) -> dict[str, dict]:
    """A layout as the rollout server's /weights/layout answers it."""
    return {name: {"dtype": dtype, "shape": list(shape)} for name, (dtype, shape) in layout.items()}


def layout_from_json(body: dict[str, dict]) -> Layout:
    """A layout from /weights/layout's answer."""
    return {name: (entry["dtype"], tuple(entry["shape"])) for name, entry in body.items()}


class StoreWeightPush:
    """Saves each pushed policy as a checkpoint artifact under `prefix`, keeping only the one the server serves."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.session = uuid.uuid4().hex[:8]
        self.pushes = 0
        self.served: str | None = None

    def save(self, model: SimpleARModel) -> str:
        """Write `model` (safetensors, manifest last) to a fresh URI under the prefix and return it."""
        self.pushes += 1
        uri = join(self.prefix, f"policy-{self.session}-{self.pushes:06d}")
        model.save(uri, self.store)
        return uri

    def served_now(self, uri: str) -> None:
        """Record that the server loaded `uri`; delete the checkpoint it replaced (manifest first)."""
        previous, self.served = self.served, uri
        if previous is None or previous == uri:
            return
        self.store.delete(join(previous, MANIFEST))
        if is_s3(previous):
            for child in self.store.list(previous):
                self.store.delete(child)
        else:
            shutil.rmtree(resolve_local(previous), ignore_errors=True)


class NcclUnavailable(RuntimeError):
    """The NCCL weight push cannot be used here (no CUDA, no vLLM, or a server that does not take it)."""


def nccl_unavailable(health: dict[str, Any]) -> str | None:
    """Why this trainer cannot push to the server whose /health answered `health` over NCCL, or None when it can."""
    if not torch.cuda.is_available():
        return "the trainer has no CUDA device"
    if "nccl" not in health.get("weight_sync", []):
        return (f"the rollout server ({health.get('engine')} engine) takes no NCCL pushes: it needs --engine vllm, "
                "--weight-transfer nccl or auto, and a GPU")
    try:
        import vllm.distributed.weight_transfer.nccl_common  # noqa: F401
    except ImportError as exc:
        return f"vLLM's NCCL communicator does not import here ({exc})"
    return None


class NcclWeightPush:
    """Joins the server's NCCL group once (this process is rank 0), then broadcasts the policy on each push."""

    def __init__(self, base_url: str, host: str, port: int, timeout_s: float = 600.0) -> None:
        self.base_url, self.host, self.port, self.timeout_s = base_url.rstrip("/"), host, port, timeout_s
        self.group: Any = None
        self.layout: Layout | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the server; its `error` in the exception when it refuses."""
        response = requests.post(f"{self.base_url}{path}", json=body, timeout=self.timeout_s)
        if response.status_code >= 400:
            raise NcclUnavailable(f"rollout server {self.base_url}{path} answered {response.status_code}: "
                                  f"{response.json().get('error', response.text) if response.content else ''}")
        return response.json()

    def served_layout(self) -> Layout:
        """The tensors the server serves (fetched once): what every push must announce and send."""
        if self.layout is None:
            answer = requests.get(f"{self.base_url}/weights/layout", timeout=self.timeout_s)
            answer.raise_for_status()
            self.layout = layout_from_json(answer.json()["parameters"])
        return self.layout

    def connect(self) -> None:
        """Join the NCCL group: the server's init request and this rank's rendezvous run together, as both block
        until the other side arrives."""
        from vllm.distributed.weight_transfer.nccl_common import trainer_init

        health = requests.get(f"{self.base_url}/health", timeout=self.timeout_s).json()
        init_info = {"master_address": self.host, "master_port": self.port, "rank_offset": 1,
                     "world_size": int(health["nccl_world_size"]) + 1, "packed": True}
        with ThreadPoolExecutor(max_workers=1) as executor:
            joined = executor.submit(self._post, "/weights/nccl/init", {"init_info": init_info})
            self.group = trainer_init(init_info)
            joined.result()
        log.info("NCCL weight sync with %s: rendezvous %s:%d, world size %d", self.base_url, self.host, self.port,
                 init_info["world_size"])

    def push(self, model: SimpleARModel) -> int:
        """Broadcast every parameter of `model.lm` in the served dtype; the server's new policy version.

        WeightLayoutMismatch, before anything is sent, when the policy does not match what the server serves.
        """
        layout = self.served_layout()
        dtypes = {name: getattr(torch, dtype) for name, (dtype, _) in layout.items()}
        announced = {name: (str(dtypes.get(name, p.dtype)).removeprefix("torch."), shape)
                     for name, (p, shape) in _parameters(model).items()}
        check_layout(layout, announced, exact_dtype=True, what="this trainer's policy")
        from vllm.distributed.weight_transfer.packed_tensor import packed_nccl_broadcast_producer

        if self.group is None:
            self.connect()
        names = list(announced)
        self._post("/weights/nccl/prepare", {"update_info": {
            "names": names, "dtype_names": [announced[n][0] for n in names],
            "shapes": [list(announced[n][1]) for n in names]}})
        with ThreadPoolExecutor(max_workers=1) as executor:
            received = executor.submit(self._post, "/weights/nccl/update", {})
            packed_nccl_broadcast_producer(iterator=_cast(model, dtypes), group=self.group, src=0,
                                           post_iter_func=lambda item: item[1])
            return int(received.result()["policy_version"])


def _parameters(model: SimpleARModel) -> dict[str, tuple[torch.nn.Parameter, tuple[int, ...]]]:
    """The policy's parameters by name (a tied head once), with their shapes."""
    layout = module_layout(model.lm)
    params = dict(model.lm.named_parameters())
    return {name: (params[name], shape) for name, (_, shape) in layout.items()}


def _cast(model: SimpleARModel, dtypes: dict[str, torch.dtype]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) in announce order, each detached, contiguous and in the dtype the server holds."""
    for name, param in model.lm.named_parameters():
        yield name, param.detach().to(dtypes[name]).contiguous()
