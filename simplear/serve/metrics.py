"""The server's Prometheus metrics (requests, errors, latency, images/s, queue depth, batch size) and middleware."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "simplear_serve"
CLIENT_CLOSED = 499
THROUGHPUT_WINDOW_S = 60.0
ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/v1/models/[^/]+:predict$"), "v1_predict"),
    (re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$"), "v2_infer"),
    (re.compile(r"^/openai/v1/images/generations$"), "openai_images"),
)


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


def install_metrics_middleware(app: FastAPI, metrics: ServeMetrics) -> None:
    """Count requests and errors and time the latency of the generation routes, whatever answers them."""

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        route = route_of(request.url.path)
        if route is None:
            return await call_next(request)
        start = time.perf_counter()
        code = 500
        try:
            response = await call_next(request)
            code = response.status_code
            return response
        except asyncio.CancelledError:
            code = CLIENT_CLOSED
            raise
        finally:
            metrics.latency.labels(route=route).observe(time.perf_counter() - start)
            metrics.requests.labels(route=route, code=str(code)).inc()
            if code >= 400:
                metrics.errors.labels(route=route, code=str(code)).inc()
