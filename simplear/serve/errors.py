"""Errors the server answers with their own status: queue full (503 + Retry-After), deadline (504), bad body (400)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

BODY_LOCATIONS = frozenset({"body", "InferenceRequest"})


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


async def _bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
    """400 instead of FastAPI's 422 for a body that is not a valid v2 inference request."""
    errors = [e for e in exc.errors() if tuple(e.get("loc", ())) != ("body", "bytes")] or list(exc.errors())
    return JSONResponse({"error": f"invalid request: {describe_validation(errors)}"}, status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    """Answer QueueFull, DeadlineExceeded and malformed bodies with their statuses (KServe maps InvalidInput to 400)."""
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(DeadlineExceeded, _deadline)
    app.add_exception_handler(RequestValidationError, _bad_body)

