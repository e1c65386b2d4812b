"""How the generation routes read a request: POST only, a JSON body whatever its content type, or v2 binary tensors.

- Any method but POST on `:predict`, `/infer` or the OpenAI route gets 405 with `Allow: POST` (GET on `:predict`
  would otherwise reach KServe's model metadata route and be told the model `simplear:predict` does not exist).
- v1, v2 and OpenAI bodies are JSON under any Content-Type, as OpenAI's own route always took them; a v2 body is
  binary (KServe's binary tensor extension) exactly when it has an `Inference-Header-Content-Length` header.
- Every malformed body is InvalidInput (400) saying what is wrong: not UTF-8, not JSON, a header length that is
  not a byte count within the body, binary inputs whose sizes or BYTES length prefixes do not fit their data. KServe
  0.21's `InferRequest.from_bytes` would answer some of these with 500 (ValueError, struct.error).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import orjson
from cloudevents.sdk.converters.util import has_binary_headers
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.utils.numpy_codec import to_np_dtype
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from simplear.serve.errors import describe_validation, log_client_error
from simplear.serve.metrics import route_of

V2 = "v2"
LENGTH_PREFIX = struct.Struct("<I")


class BinaryInput(BaseModel):
    """One input in the JSON header of a binary request: its data inline, or `binary_data_size` bytes after it."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list | None = None


class RequestedOutput(BaseModel):
    """One output a request asks for."""

    name: str
    parameters: dict[str, Any] | None = None


class BinaryHeader(BaseModel):
    """The JSON header of a request in KServe's binary tensor extension."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[BinaryInput]
    outputs: list[RequestedOutput] | None = None


def json_body(raw: bytes) -> object:
    """The JSON value of a request body; InvalidInput when it is not UTF-8 text or not JSON."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"body is not UTF-8 text: byte 0x{raw[err.start]:02x} at position {err.start}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"body is not valid JSON ({err})") from None


def _header_length(raw: str, body_size: int) -> int:
    """The Inference-Header-Content-Length value: the byte length of the JSON header at the start of the body."""
    if not raw.strip().isdigit():
        raise InvalidInput(f"Inference-Header-Content-Length must be a byte count, got {raw!r}")
    length = int(raw)
    if not 0 < length <= body_size:
        raise InvalidInput(f"Inference-Header-Content-Length {length} is outside the {body_size}-byte body")
    return length


def _check_bytes_elements(name: str, data: bytes, count: int) -> None:
    """BYTES elements are a 4-byte little-endian length and that many bytes; `count` of them must fill `data`."""
    offset = found = 0
    while offset < len(data):
        if offset + LENGTH_PREFIX.size > len(data):
            raise InvalidInput(f"input {name!r}: binary data ends inside the length prefix of element {found}")
        (length,) = LENGTH_PREFIX.unpack_from(data, offset)
        offset += LENGTH_PREFIX.size
        if offset + length > len(data):
            raise InvalidInput(f"input {name!r}: element {found} says {length} bytes, "
                               f"but only {len(data) - offset} bytes of its binary data are left")
        offset += length
        found += 1
    if found != count:
        raise InvalidInput(f"input {name!r}: binary data holds {found} BYTES elements, its shape says {count}")


def check_binary_request(body: bytes, header_length: int) -> None:
    """InvalidInput unless the JSON header is a v2 request and every binary input's data fits what it declares."""
    try:
        header = BinaryHeader.model_validate(json_body(body[:header_length]))
    except InvalidInput as err:
        raise InvalidInput(f"the JSON header (the first {header_length} bytes): {err}") from None
    except ValidationError as err:
        raise InvalidInput(f"invalid request header: {describe_validation(err.errors())}") from None
    offset = header_length
    for tensor in header.inputs:
        parameters = tensor.parameters or {}
        if tensor.data is not None or "binary_data_size" not in parameters:
            continue
        size, dtype = parameters["binary_data_size"], to_np_dtype(tensor.datatype)
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size must be a byte count, got {size!r}")
        if dtype is None:
            raise InvalidInput(f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}")
        if offset + size > len(body):
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size} runs past the end of the body "
                               f"({len(body) - offset} bytes left)")
        count = math.prod(tensor.shape) if all(d >= 0 for d in tensor.shape) else -1
        if tensor.datatype == "BYTES":
            _check_bytes_elements(tensor.name, body[offset : offset + size], count)
        elif count < 0 or size != count * dtype().itemsize:
            raise InvalidInput(f"input {tensor.name!r}: {size} bytes of binary data for shape {tensor.shape} "
                               f"of {tensor.datatype}")
        offset += size
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} bytes follow the last binary input")


class CheckedDataPlane(DataPlane):
    """KServe's data plane, reading bodies as the module docstring says: clear 400s instead of 500s."""

    def decode(self, body: object, headers: dict | None, protocol_version: str = "v1",
               model_name: str | None = None) -> tuple[object, dict]:
        """A v1 body as JSON whatever its content type (CloudEvents aside); v2 bodies through KServe, checked."""
        if isinstance(body, bytes) and protocol_version.lower() != V2 and not has_binary_headers(headers or {}):
            return self.decode_cloudevent(json_body(body))
        return super().decode(body, headers, protocol_version, model_name)

    def decode_inference_request(self, body: bytes | InferenceRequest, headers: dict,
                                 model_name: str) -> InferRequest:
        """A v2 request: JSON (any content type) or binary (with its header), checked before KServe decodes it."""
        if isinstance(body, bytes):
            raw_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
            if raw_length is None:
                try:
                    body = InferenceRequest.model_validate(json_body(body))
                except ValidationError as err:
                    raise InvalidInput(f"invalid request: {describe_validation(err.errors())}") from None
            else:
                check_binary_request(body, _header_length(raw_length, len(body)))
        try:
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            raise
        except Exception as err:
            raise InvalidInput(f"malformed request: {type(err).__name__}: {err}") from None


class PostOnly:
    """ASGI middleware: a generation route called with any method but POST gets 405 with `Allow: POST`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse other methods on the generation routes; pass everything else through."""
        if scope["type"] != "http" or scope["method"] == "POST" or route_of(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        message = f"method {scope['method']} is not allowed on {scope['path']}; use POST"
        log_client_error(scope["method"], scope["path"], 405, message)
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"allow", b"POST")]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
