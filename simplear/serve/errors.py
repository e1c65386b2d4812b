"""Errors the server answers with their own status: queue full (503 + Retry-After), deadline (504), bad body (400).

A client error (4xx) is logged as one WARNING line with the method, route and reason, never with a traceback:
KServe's own handlers log each at ERROR with the full traceback (kserve/errors.py, kserve 0.21).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve.errors import InvalidInput, ModelNotFound
from kserve.logging import logger
from starlette.exceptions import HTTPException

BODY_LOCATIONS = frozenset({"body", "InferenceRequest"})


def log_client_error(method: str, path: str, status: int, reason: str) -> None:
    """One WARNING line for a request the server refused because of the request itself."""
    logger.warning("%d %s %s: %s", status, method, path, reason)


def client_error(request: Request, status: int, message: str) -> JSONResponse:
    """The server's JSON error answer to a bad request, logged as one line."""
    log_client_error(request.method, request.url.path, status, message)
    return JSONResponse({"error": message}, status_code=status)


class QueueFull(Exception):
    """The batcher holds as many images as it may; the client should retry after `retry_after_s`."""

    def __init__(self, queued: int, limit: int, retry_after_s: int) -> None:
        super().__init__(f"server busy: {queued} images queued (limit {limit}); retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """A request was not answered within the server's deadline and was cancelled."""

    def __init__(self, deadline_s: float, waited_in_queue: bool) -> None:
        where = "waiting in the queue" if waited_in_queue else "while being generated"
        super().__init__(f"deadline of {deadline_s:g} s exceeded {where}; the request was cancelled")


def describe_validation(errors: list[dict], prefix: str = "") -> str:
    """One readable line per pydantic error: `where: what`."""
    lines = []
    for error in errors:
        if error.get("type") == "json_invalid":
            lines.append(f"body is not valid JSON ({error.get('ctx', {}).get('error', 'decode error')})")
            continue
        where = prefix
        for part in error.get("loc", ()):
            if part in BODY_LOCATIONS:
                continue
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        message = "unknown field" if error.get("type") == "extra_forbidden" else error.get("msg", "invalid")
        lines.append(f"{where or 'body'}: {message}")
    return "; ".join(lines)


async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
    """503 with Retry-After."""
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


async def _deadline(_: Request, exc: DeadlineExceeded) -> JSONResponse:
    """504: the server, waiting on its generation engine, gave up at the deadline."""
    return JSONResponse({"error": str(exc)}, status_code=504)


async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 instead of FastAPI's 422 for a body that is not a valid v2 inference request."""
    errors = [e for e in exc.errors() if tuple(e.get("loc", ())) != ("body", "bytes")] or list(exc.errors())
    return client_error(request, 400, f"invalid request: {describe_validation(errors)}")


async def _invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
    """400 saying what is wrong with the request."""
    return client_error(request, 400, str(exc))


async def _model_not_found(request: Request, exc: ModelNotFound) -> JSONResponse:
    """404 for a model name this server does not serve."""
    return client_error(request, 404, str(exc))


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """FastAPI's answer, but a body it could not parse gets a 400 that says why instead of "error parsing the body"."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        byte = cause.object[cause.start]
        return client_error(request, 400, f"body is not UTF-8 text: byte 0x{byte:02x} at position {cause.start}")
    if exc.status_code == 400 and cause is not None:
        return client_error(request, 400, f"body is not valid JSON ({cause})")
    if 400 <= exc.status_code < 500:
        log_client_error(request.method, request.url.path, exc.status_code, str(exc.detail))
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer QueueFull, DeadlineExceeded and malformed bodies with their statuses; client errors log one line.

    Call it after KServe registered its handlers: the InvalidInput and ModelNotFound handlers replace KServe's.
    """
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(DeadlineExceeded, _deadline)
    app.add_exception_handler(RequestValidationError, _bad_body)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(ModelNotFound, _model_not_found)
    app.add_exception_handler(HTTPException, _http_error)

