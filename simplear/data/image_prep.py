"""Images for tokenizing: read from a path or store URI, decode, check the size, resize and centre-crop."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from simplear.config import VisionConfig
from simplear.store import ObjectNotFound, Store, StoreError, is_s3, parse_s3


class ImageRejected(ValueError):
    """An image that cannot be used; the message is the reason recorded in the errors file."""


def read_image(store: Store, uri: str) -> bytes:
    """The bytes of an image; ImageRejected when it is missing or unreadable, StoreError when S3 itself fails."""
    if is_s3(uri):
        try:
            location = parse_s3(uri)
        except StoreError as exc:
            raise ImageRejected(f"unreadable: {exc}") from exc
        if not location.key or uri.endswith("/"):
            raise ImageRejected("unreadable: the URI names a bucket or prefix, not an object")
    try:
        return store.read(uri)
    except ObjectNotFound as exc:
        raise ImageRejected("missing: no file or object at this path") from exc
    except StoreError as exc:
        if is_s3(uri):
            raise
        raise ImageRejected(f"unreadable: {exc}") from exc


def resample_for(vision: VisionConfig) -> Image.Resampling:
    """NEAREST for the palette tokenizer (flat cells stay lossless), LANCZOS for real images."""
    return Image.Resampling.NEAREST if vision.kind == "palette" else Image.Resampling.LANCZOS


def resize_and_crop(image: Image.Image, resolution: int, resample: Image.Resampling) -> Image.Image:
    """Scale so the short edge is `resolution`, then crop the centre `resolution` x `resolution` square."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if size != image.size:
        image = image.resize(size, resample)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def prepare_image(data: bytes, resolution: int, min_size: int, resample: Image.Resampling) -> Image.Image:
    """The RGB `resolution`-pixel square of an encoded image, or ImageRejected saying why it is unusable."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image: no known image format") from exc
    except Exception as exc:  # PIL raises many types for malformed headers
        raise ImageRejected(f"corrupt: {type(exc).__name__}: {exc}") from exc
    width, height, limit = *image.size, max(min_size, 1)
    if min(width, height) < limit:
        raise ImageRejected(f"too small: {width}x{height}, short edge {min(width, height)} px < {limit} px")
    try:
        image = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:  # truncated data, bad compression streams, decompression bombs, ...
        raise ImageRejected(f"corrupt: {type(exc).__name__}: {exc}") from exc
    return resize_and_crop(image, resolution, resample)
