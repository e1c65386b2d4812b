"""`POST /openai/v1/images/generations`: OpenAI's image API, so `openai.OpenAI(base_url=.../openai/v1)` works.

Request: `prompt` (required), `model` (the served name, optional), `n` (1..limit, default 1), `size` ("WxH",
square and served, default the checkpoint's; "auto" too), `response_format` ("b64_json" only), `output_format`
("png" only), `user` (ignored), and SimpleAR's `negative_prompt`, `cfg_scale`, `temperature`, `top_k`, `top_p`,
`seed` (image i uses seed + i; random below 2**32 when absent). Any other field is refused.
Response: `{"created": unix time, "data": [{"b64_json": PNG base64, "seed": int}, ...], "output_format": "png",
"size": "WxH"}`. Errors are OpenAI-shaped `{"error": {"message", "type", "param", "code"}}`: 400 bad request,
503 queue full (Retry-After), 504 deadline exceeded.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput, ModelNotReady

from simplear.serve.errors import DeadlineExceeded, QueueFull, log_client_error
from simplear.serve.model import SimpleARPredictor
from simplear.serve.request_body import json_body

PATH = "/openai/v1/images/generations"


def openai_error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in OpenAI's shape."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def openai_router(model: SimpleARPredictor) -> APIRouter:
    """The router of the OpenAI images route, generating through `model`'s validator and batcher."""
    router = APIRouter(tags=["OpenAI"])

    @router.post(PATH)
    async def generate_images(request: Request) -> JSONResponse:
        """Generate `n` images of a prompt."""
        try:
            if model.config.codes_only:
                raise InvalidInput("this server runs --codes-only: images come from the v1 and v2 routes as codes")
            payload = json_body(await request.body())
            if model.validator is None:
                raise ModelNotReady(model.name)
            specs = model.validator.openai(payload, model.name)
            results = await model.generate(specs)
        except InvalidInput as err:
            log_client_error(request.method, request.url.path, 400, str(err))
            return openai_error(400, str(err), "invalid_request_error")
        except ModelNotReady as err:
            return openai_error(503, str(err), "server_error")
        except QueueFull as err:
            return openai_error(503, str(err), "server_error", {"Retry-After": str(err.retry_after_s)})
        except DeadlineExceeded as err:
            return openai_error(504, str(err), "timeout")
        side = results[0].resolution
        return JSONResponse({
            "created": int(time.time()),
            "data": [{"b64_json": result.image_b64, "seed": result.seed} for result in results],
            "output_format": "png",
            "size": f"{side}x{side}",
        })

    return router
