"""Request validation: v1 instances and OpenAI image requests to image specs, or InvalidInput saying what is wrong.

Types are strict (no "6" for a number, no 1.0 for an integer), unknown fields are refused, ranges are the
SamplingConfig's, and the server's limits (ServeLimits) bound prompt length and images per request. A request
without a seed gets a random one (below 2**32, exact in every JSON reader); image i of a request uses seed + i.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Literal, TypeVar

from kserve.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simplear.config import SamplingConfig, ServeLimits
from simplear.sampling.batch import Request
from simplear.serve.errors import describe_validation
from simplear.serve.images import ImageSpec

RANDOM_SEED_BOUND = 2**32
SAMPLING_FIELDS = ("cfg_scale", "temperature", "top_k", "top_p", "negative_prompt")
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
Body = TypeVar("Body", bound=BaseModel)


class StrictBody(BaseModel):
    """A request body: strict types, finite numbers, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class SamplingFields(StrictBody):
    """Per-image sampling parameters a client may set; None takes the server's default (SamplingConfig's)."""

    negative_prompt: str | None = None
    cfg_scale: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


class ImageInstance(SamplingFields):
    """One image of a v1 predict request, or one row of a v2 infer request."""

    prompt: str
    resolution: int | None = None


class V1Request(StrictBody):
    """The body of `POST /v1/models/<name>:predict`."""

    instances: list[ImageInstance] = Field(min_length=1)


class OpenAIImageRequest(SamplingFields):
    """The body of `POST /openai/v1/images/generations`: OpenAI's fields we honour plus SimpleAR's sampling ones."""

    prompt: str
    model: str | None = None
    n: int = Field(default=1, ge=1)
    size: str | None = None
    response_format: Literal["b64_json"] | None = None
    output_format: Literal["png"] | None = None
    user: str | None = None


class RequestValidator:
    """Turns validated bodies into image specs within the server's limits and served resolutions."""

    def __init__(
        self, limits: ServeLimits, resolutions: tuple[int, ...], prompt_tokens: Callable[[str], int], codebook_size: int
    ) -> None:
        self.limits = limits
        self.resolutions = resolutions
        self.prompt_tokens = prompt_tokens
        self.codebook_size = codebook_size

    @property
    def default_resolution(self) -> int:
        """Resolution of a request that names none."""
        return self.resolutions[0]

    def v1(self, payload: object) -> list[ImageSpec]:
        """Specs of a v1 body `{"instances": [...]}`, one image per instance."""
        if not isinstance(payload, dict):
            raise InvalidInput('expected a JSON object {"instances": [{"prompt": ...}, ...]}')
        self.check_count(len(payload["instances"]) if isinstance(payload.get("instances"), list) else 0)
        body = parse(V1Request, payload)
        return [
            spec
            for i, instance in enumerate(body.instances)
            for spec in self.specs(instance.prompt, instance, 1, instance.resolution, f"instances[{i}]")
        ]

    def openai(self, payload: object, served_model: str) -> list[ImageSpec]:
        """Specs of an OpenAI image request: `n` images of `prompt` at `size`."""
        if not isinstance(payload, dict):
            raise InvalidInput('expected a JSON object {"prompt": ..., "n": ..., "size": ...}')
        body = parse(OpenAIImageRequest, payload)
        if body.model is not None and body.model != served_model:
            raise InvalidInput(f"model {body.model!r} is not served here; this server serves {served_model!r}")
        self.check_count(body.n)
        return self.specs(body.prompt, body, body.n, self.size_resolution(body.size), "")

    def check_count(self, images: int) -> None:
        """No more images than the per-request limit."""
        most = self.limits.max_images_per_request
        if images > most:
            raise InvalidInput(f"{images} images asked; at most {most} per request")

    def size_resolution(self, size: str | None) -> int | None:
        """Resolution of an OpenAI size "WxH" (square only); None or "auto" is the default."""
        if size is None or size == "auto":
            return None
        match = SIZE.match(size)
        if match is None:
            side = self.default_resolution
            raise InvalidInput(f"size {size!r} is not WIDTHxHEIGHT, e.g. {side}x{side}")
        width, height = int(match[1]), int(match[2])
        if width != height:
            raise InvalidInput(f"size {size!r} is not square; served sizes: {self._sizes()}")
        if width not in self.resolutions:
            raise InvalidInput(f"size {size!r} is not served; served sizes: {self._sizes()}")
        return width

    def specs(
        self, prompt: str, fields: SamplingFields, count: int, resolution: int | None, where: str
    ) -> list[ImageSpec]:
        """`count` specs of one prompt, its sampling fields and resolution; `where` names it in errors."""
        at = f"{where}." if where else ""
        self.check_prompt(prompt, f"{at}prompt", allow_empty=False)
        if fields.negative_prompt is not None:
            self.check_prompt(fields.negative_prompt, f"{at}negative_prompt", allow_empty=True)
        resolution = self.default_resolution if resolution is None else resolution
        if resolution not in self.resolutions:
            raise InvalidInput(f"{at}resolution {resolution} is not served; served sizes: {self._sizes()}")
        if fields.top_k is not None and fields.top_k > self.codebook_size:
            raise InvalidInput(f"{at}top_k {fields.top_k} is above the {self.codebook_size} codes; 0 keeps every code")
        chosen = {name: getattr(fields, name) for name in SAMPLING_FIELDS if getattr(fields, name) is not None}
        specs = []
        for i in range(count):
            seed = secrets.randbelow(RANDOM_SEED_BOUND) if fields.seed is None else fields.seed + i
            try:
                params = SamplingConfig(**chosen, seed=seed)
            except ValidationError as err:
                raise InvalidInput(describe_validation(list(err.errors()), where)) from None
            specs.append(ImageSpec(request=Request(prompt, params), resolution=resolution))
        return specs

    def check_prompt(self, text: str, name: str, allow_empty: bool) -> None:
        """Valid Unicode within the character and token limits (non-blank unless `allow_empty`)."""
        if not allow_empty and not text.strip():
            raise InvalidInput(f"{name} is empty")
        if len(text) > self.limits.max_prompt_chars:
            raise InvalidInput(f"{name} has {len(text)} characters; at most {self.limits.max_prompt_chars}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{name} is not valid Unicode text") from None
        tokens = self.prompt_tokens(text)
        if tokens > self.limits.max_prompt_tokens:
            raise InvalidInput(f"{name} takes {tokens} tokens; at most {self.limits.max_prompt_tokens}")

    def _sizes(self) -> str:
        """Served sizes as text."""
        return ", ".join(f"{r}x{r}" for r in self.resolutions)


def parse(schema: type[Body], payload: dict, where: str = "") -> Body:
    """`payload` validated by `schema`, or InvalidInput listing every problem (prefixed by `where`)."""
    try:
        return schema.model_validate(payload)
    except ValidationError as err:
        raise InvalidInput(describe_validation(list(err.errors()), where)) from None
