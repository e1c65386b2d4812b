"""GenEval's folder layout: `NNNNN/metadata.jsonl`, `NNNNN/samples/NNNN.png` and `NNNNN/grid.png` per prompt."""

from __future__ import annotations

import io
import json

from PIL import Image

from simplear.store import Store, join

METADATA = "metadata.jsonl"


class PromptFileError(ValueError):
    """A prompt file that cannot be read; the message names the file and line."""


def prompt_dir(root: str, index: int) -> str:
    """The folder of prompt number `index`."""
    return join(root, f"{index:05d}")


def write_prompt_folder(store: Store, root: str, index: int, metadata: dict, images: list[Image.Image]) -> None:
    """Samples, then the grid, then metadata.jsonl last: a folder with its metadata is complete."""
    # vision.base needs torch, which the report step on the base image does not have
    from simplear.vision.base import image_grid, png_bytes

    folder = prompt_dir(root, index)
    for j, image in enumerate(images):
        store.write(join(folder, "samples", f"{j:04d}.png"), png_bytes(image))
    store.write(join(folder, "grid.png"), png_bytes(image_grid(images, columns=min(len(images), 4))))
    store.write(join(folder, METADATA), (json.dumps(metadata) + "\n").encode())


def folder_complete(store: Store, root: str, index: int) -> bool:
    """True when prompt `index` has its metadata.jsonl, written last."""
    return store.exists(join(prompt_dir(root, index), METADATA))


def read_samples(store: Store, root: str, index: int) -> list[Image.Image]:
    """The sample images of a complete prompt folder, in order."""
    uris = sorted(u for u in store.list(join(prompt_dir(root, index), "samples")) if u.endswith(".png"))
    return [Image.open(io.BytesIO(store.read(u))).convert("RGB") for u in uris]


def read_geneval_prompts(store: Store, uri: str) -> list[dict]:
    """GenEval's `evaluation_metadata.jsonl`: one metadata object with a "prompt" per line."""
    prompts = []
    for number, line in enumerate(store.read(uri).decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(f"{uri}:{number}: not JSON ({err.msg})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
            raise PromptFileError(f"{uri}:{number}: each line must be an object with a non-empty \"prompt\"")
        prompts.append(entry)
    if not prompts:
        raise PromptFileError(f"{uri}: no prompts")
    return prompts
