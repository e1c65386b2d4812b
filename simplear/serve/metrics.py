"""The server's Prometheus metrics (requests, errors, latency, images/s, queue depth, batch size) and middleware."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from contextvars import ContextVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "simplear_serve"
CLIENT_CLOSED = 499
THROUGHPUT_WINDOW_S = 60.0
ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/v1/models/[^/]+:predict$"), "v1_predict"),
    (re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$"), "v2_infer"),
    (re.compile(r"^/openai/v1/images/generations$"), "openai_images"),
)
_SERVED: ContextVar[list[tuple[int, int]] | None] = ContextVar("simplear_served_images", default=None)
"""(resolution, images) a request generated, counted by MeasureRoutes once its answer has been sent."""


class ServeMetrics:
    """The server's metrics, registered in one Prometheus registry (KServe's /metrics serves the default one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests to the generation routes", ["route", "code"],
                                registry=registry)
        self.errors = Counter(f"{PREFIX}_errors", "generation requests answered with an error status",
                              ["route", "code"], registry=registry)
        self.latency = Histogram(f"{PREFIX}_request_seconds", "time to answer a generation request", ["route"],
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
                                 registry=registry)
        self.images = Counter(f"{PREFIX}_images", "images delivered to clients", ["resolution"], registry=registry)
        self.images_per_second = Gauge(f"{PREFIX}_images_per_second",
                                       f"images delivered per second over the last {THROUGHPUT_WINDOW_S:g} s",
                                       registry=registry)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "images waiting for a sampler batch", registry=registry)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "images per sampler call (count = sampler calls)",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=registry)
        self.batch_seconds = Histogram(f"{PREFIX}_batch_seconds", "time of one sampler call with decoding to PNG",
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                                       registry=registry)
        self.expired = Counter(f"{PREFIX}_expired_images",
                               "images withdrawn at their deadline or when their client left, by where they were",
                               ["stage"], registry=registry)
        self._delivered: deque[tuple[float, int]] = deque()
        self.images_per_second.set_function(self._throughput)

    def delivered(self, resolution: int, count: int) -> None:
        """Count images generated for a request: at once outside a request, else once its answer has been sent."""
        pending = _SERVED.get()
        if pending is None:
            self.count_delivered(resolution, count)
        else:
            pending.append((resolution, count))

    def count_delivered(self, resolution: int, count: int) -> None:
        """Count images handed to clients."""
        self.images.labels(resolution=str(resolution)).inc(count)
        self._delivered.append((time.monotonic(), count))
        self._forget_old()

    def _throughput(self) -> float:
        """Images delivered in the last window, per second."""
        self._forget_old()
        return sum(count for _, count in self._delivered) / THROUGHPUT_WINDOW_S

    def _forget_old(self) -> None:
        """Drop deliveries older than the throughput window."""
        horizon = time.monotonic() - THROUGHPUT_WINDOW_S
        while self._delivered and self._delivered[0][0] < horizon:
            self._delivered.popleft()


def route_of(path: str) -> str | None:
    """Metric label of a generation route, None for any other path."""
    return next((name for pattern, name in ROUTES if pattern.match(path)), None)


class MeasureRoutes:
    """ASGI middleware: count requests and errors, time the generation routes and count the images they served.

    Images a request generated are counted once its 200 answer has been sent whole: not when its client left
    (499), its deadline passed (504) or the answer failed.
    """

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Measure one request to a generation route; pass any other through."""
        route = route_of(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code, answered, images = 500, False, []
        token = _SERVED.set(images)

        async def tracked_send(message: Message) -> None:
            nonlocal code, answered
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)
            answered = answered or (message["type"] == "http.response.body" and not message.get("more_body", False))

        try:
            await self.app(scope, receive, tracked_send)
        except asyncio.CancelledError:
            code = CLIENT_CLOSED
            raise
        finally:
            _SERVED.reset(token)
            metrics = self.metrics
            metrics.latency.labels(route=route).observe(time.perf_counter() - start)
            metrics.requests.labels(route=route, code=str(code)).inc()
            if code >= 400:
                metrics.errors.labels(route=route, code=str(code)).inc()
            if answered and code == 200:
                for resolution, count in images:
                    metrics.count_delivered(resolution, count)
