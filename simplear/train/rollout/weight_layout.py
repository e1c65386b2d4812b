"""The parameter layout a weight push must match: each tensor's name, shape and dtype, as the served policy has them.

The rollout server reads it from its initial checkpoint (the safetensors header, no tensor loaded) with the dtype its
engine serves in; a push that announces anything else is refused before a byte is loaded, so the engine keeps serving
the weights it has. The trainer checks its own policy against the server's layout before it sends anything.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

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
