"""The server's open inference protocol (v2) contract: BYTES prompts in; base64 PNGs, seeds and resolutions out.

Request (`POST /v2/models/<name>/infer`):
- input `prompt`, datatype BYTES, shape [N] (or any shape of N elements): one image per prompt, 1 <= N <= limit;
- optional per-row inputs of N elements each: `negative_prompt` (BYTES), `cfg_scale`, `temperature`, `top_p`
  (FP32/FP64), `top_k`, `seed`, `resolution` (INT64/INT32/UINT64/UINT32);
- the same names as request `parameters` or as `parameters` of the `prompt` input apply to every row. A name
  may come from one place only; unknown inputs, parameters or datatypes are refused with 400. KServe's
  transport parameters (`binary_data_output`, `binary_data`, `binary_data_size`, `content_type`) are allowed.
Response outputs, N rows each, in this order (a request's `outputs` may pick some of them):
- `image`, BYTES [N]: each element the PNG as base64 text (also with binary outputs: the element is base64);
  a server started with --codes-only answers `codes`, INT64 [N, codes per image], instead;
- `seed`, INT64 [N]: each image's seed: the row's `seed` input, else s + i for a `seed` parameter s, else random
  below 2**32;
- `resolution`, INT32 [N]: pixels per side of each image.
"""

from __future__ import annotations

import math
import uuid

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from simplear.serve.images import Generated, ImageSpec
from simplear.serve.schemas import ImageInstance, RequestValidator, parse

FLOATS = ("FP32", "FP64")
INTS = ("INT64", "INT32", "UINT64", "UINT32")
INPUT_TYPES: dict[str, tuple[str, ...]] = {
    "prompt": ("BYTES",),
    "negative_prompt": ("BYTES",),
    "cfg_scale": FLOATS,
    "temperature": FLOATS,
    "top_p": FLOATS,
    "top_k": INTS,
    "seed": INTS,
    "resolution": INTS,
}
TRANSPORT_PARAMETERS = frozenset({"binary_data_output", "binary_data", "binary_data_size", "content_type"})


def output_names(codes_only: bool) -> tuple[str, ...]:
    """Names of the outputs the server answers."""
    return ("codes" if codes_only else "image", "seed", "resolution")


def parse_v2(request: InferRequest, validator: RequestValidator, codes_only: bool) -> list[ImageSpec]:
    """Image specs of a v2 request, one per prompt row, or InvalidInput saying what is wrong."""
    columns: dict[str, list] = {}
    for tensor in request.inputs:
        if tensor.name in columns:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        if tensor.name not in INPUT_TYPES:
            raise InvalidInput(f"unknown input {tensor.name!r}; inputs: {', '.join(INPUT_TYPES)}")
        if tensor.datatype not in INPUT_TYPES[tensor.name]:
            expected = " or ".join(INPUT_TYPES[tensor.name])
            raise InvalidInput(f"input {tensor.name!r} has datatype {tensor.datatype}; expected {expected}")
        columns[tensor.name] = _values(tensor)
    if "prompt" not in columns:
        raise InvalidInput("input 'prompt' (BYTES, shape [N]) is required")
    rows = len(columns["prompt"])
    if rows == 0:
        raise InvalidInput("input 'prompt' holds no prompt")
    validator.check_count(rows)
    for name, values in columns.items():
        if len(values) != rows:
            raise InvalidInput(f"input {name!r} has {len(values)} values for {rows} prompts")
    shared = _shared_parameters(request)
    clash = sorted(shared.keys() & columns.keys())
    if clash:
        raise InvalidInput(f"{', '.join(clash)} given both as a parameter and as an input")
    wanted = [output.name for output in request.request_outputs or ()]
    unknown = [name for name in wanted if name not in output_names(codes_only)]
    if unknown:
        raise InvalidInput(f"unknown outputs {unknown}; outputs: {', '.join(output_names(codes_only))}")
    specs: list[ImageSpec] = []
    for row in range(rows):
        where = f"row[{row}]"
        fields = {**shared, **{name: values[row] for name, values in columns.items()}}
        if type(shared.get("seed")) is int:
            fields["seed"] = shared["seed"] + row
        instance = parse(ImageInstance, fields, where)
        specs += validator.specs(instance.prompt, instance, 1, instance.resolution, where)
    return specs


def encode_v2(request: InferRequest, model_name: str, results: list[Generated], codes_only: bool) -> InferResponse:
    """The v2 response of a request's images: image (or codes), seed and resolution outputs."""
    rows = len(results)
    if codes_only:
        first = InferOutput("codes", [rows, len(results[0].codes)], "INT64", [c for r in results for c in r.codes])
    else:
        first = InferOutput("image", [rows], "BYTES", [r.image_b64 for r in results])
    outputs = [
        first,
        InferOutput("seed", [rows], "INT64", [r.seed for r in results]),
        InferOutput("resolution", [rows], "INT32", [r.resolution for r in results]),
    ]
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),
        model_name=model_name,
        infer_outputs=outputs,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )


def _values(tensor: InferInput) -> list:
    """The elements of an input, flattened, BYTES decoded to text; their count must match the shape."""
    values = _flatten(tensor.data if tensor.data is not None else [])
    if tensor.datatype == "BYTES":
        try:
            values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        except UnicodeDecodeError:
            raise InvalidInput(f"input {tensor.name!r} holds bytes that are not UTF-8 text") from None
    if not all(isinstance(d, int) and d >= 0 for d in tensor.shape) or math.prod(tensor.shape) != len(values):
        raise InvalidInput(f"input {tensor.name!r} has shape {list(tensor.shape)} but {len(values)} values")
    return values


def _flatten(data: object) -> list:
    """Row-major elements of nested lists."""
    if isinstance(data, list | tuple):
        return [item for part in data for item in _flatten(part)]
    return [data]


def _shared_parameters(request: InferRequest) -> dict:
    """Sampling parameters for every row: request parameters and the prompt input's, each name from one place."""
    prompt = next(tensor for tensor in request.inputs if tensor.name == "prompt")
    shared: dict = {}
    for source in (request.parameters or {}, prompt.parameters or {}):
        for name, value in dict(source).items():
            if name in TRANSPORT_PARAMETERS:
                continue
            if name not in INPUT_TYPES or name == "prompt":
                raise InvalidInput(f"unknown parameter {name!r}; parameters: {', '.join(list(INPUT_TYPES)[1:])}")
            if name in shared:
                raise InvalidInput(f"parameter {name!r} is given twice")
            shared[name] = value
    return shared
