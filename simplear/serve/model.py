"""The KServe model: v1 and v2 requests validated, queued in the batcher, answered with images and their seeds.

v1 `POST /v1/models/<name>:predict`:
  request  `{"instances": [{"prompt": str, "negative_prompt"?: str, "cfg_scale"?: float, "temperature"?: float,
            "top_k"?: int, "top_p"?: float, "seed"?: int, "resolution"?: int}, ...]}`, one image per instance;
  response `{"predictions": [{"image_b64": base64 PNG, "seed": int, "resolution": int}, ...]}` in instance order
           (`codes`, the row-major visual codes, instead of `image_b64` on a --codes-only server).
v2 `POST /v2/models/<name>/infer`: see simplear.serve.v2_codec.
Errors: 400 bad request (the message says what), 503 queue full (Retry-After), 504 deadline exceeded, 500 engine.
"""

from __future__ import annotations

from kserve import Model
from kserve.errors import ModelNotReady
from kserve.protocol.infer_type import InferRequest, InferResponse

from simplear.config import ServeConfig
from simplear.serve.batcher import Batcher
from simplear.serve.images import Generated, ImageGenerator, ImageSpec
from simplear.serve.loading import load_generator
from simplear.serve.metrics import ServeMetrics
from simplear.serve.schemas import RequestValidator
from simplear.serve.v2_codec import INPUT_TYPES, encode_v2, parse_v2


class SimpleARPredictor(Model):
    """SimpleAR behind KServe's data plane: load() builds the generator, predict() answers v1 and v2 requests."""

    def __init__(self, config: ServeConfig, metrics: ServeMetrics) -> None:
        super().__init__(config.model_name)
        self.config = config
        self.metrics = metrics
        self.generator: ImageGenerator | None = None
        self.validator: RequestValidator | None = None
        self.batcher: Batcher | None = None

    def load(self) -> bool:
        """Load the model, visual tokenizer and engine once; start batching."""
        if self.generator is None:
            generator, resolutions = load_generator(self.config)
            self.validator = RequestValidator(
                self.config.limits, resolutions, generator.engine.prompt_tokens, generator.vision.codebook_size
            )
            self.batcher = Batcher(generator.generate, self.config.batching, self.metrics)
            self.generator = generator
        self.ready = True
        return self.ready

    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        """A v2 InferRequest or a v1 body to its response; InvalidInput (400) for anything malformed."""
        codes_only = self.config.codes_only
        if isinstance(payload, InferRequest):
            specs = parse_v2(payload, self.validator, codes_only)
            return encode_v2(payload, self.name, await self.generate(specs), codes_only)
        specs = self.validator.v1(payload)
        return {"predictions": [self._prediction(result) for result in await self.generate(specs)]}

    async def generate(self, specs: list[ImageSpec]) -> list[Generated]:
        """The images of one request, through the batcher (QueueFull, DeadlineExceeded)."""
        if self.batcher is None:
            raise ModelNotReady(self.name)
        return await self.batcher.submit(specs)

    def get_input_types(self) -> list[dict]:
        """v2 metadata of the inputs (prompt required, the others optional)."""
        return [{"name": name, "datatype": types[0], "shape": [-1]} for name, types in INPUT_TYPES.items()]

    def get_output_types(self) -> list[dict]:
        """v2 metadata of the outputs."""
        first = (
            {"name": "codes", "datatype": "INT64", "shape": [-1, -1]}
            if self.config.codes_only
            else {"name": "image", "datatype": "BYTES", "shape": [-1]}
        )
        return [first, {"name": "seed", "datatype": "INT64", "shape": [-1]},
                {"name": "resolution", "datatype": "INT32", "shape": [-1]}]

    def stop(self) -> None:
        """Stop batching and release the engine when KServe unloads the model."""
        if self.batcher is not None:
            self.batcher.close()
        if self.generator is not None:
            self.generator.engine.shutdown()
        super().stop()

    def _prediction(self, result: Generated) -> dict:
        """One v1 prediction."""
        image = {"codes": result.codes} if self.config.codes_only else {"image_b64": result.image_b64}
        return {**image, "seed": result.seed, "resolution": result.resolution}
