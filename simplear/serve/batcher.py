"""Dynamic batching: images that arrive within a short window share one sampler call, one resolution per call.

Each image is a job in the queue of its resolution. One worker task takes the queue whose oldest job is oldest,
waits until that job has waited `batch_window_ms` (or `max_batch` jobs are there), and runs up to `max_batch` jobs as
one call of the generator in a single worker thread, so the event loop keeps answering while the model runs.
A request is admitted whole or refused with QueueFull when `queue_limit` images are waiting. At its deadline a
request is answered with DeadlineExceeded, and a request whose client left is cancelled: either way its jobs still
queued leave the queue and are never decoded; jobs already in a running call finish with their batch (the others'
work is kept) and their results are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

from simplear.config import ServeBatching
from simplear.sampling.batch import Request
from simplear.serve.errors import DeadlineExceeded, QueueFull
from simplear.serve.images import Generated, ImageSpec
from simplear.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)

RunBatch = Callable[[list[Request], int], list[Generated]]


class Stage(Enum):
    """Where a job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ABANDONED = "abandoned"


@dataclass(eq=False)
class Job:
    """One image of one request, waiting for or inside a sampler call."""

    spec: ImageSpec
    future: asyncio.Future[Generated]
    arrived: float
    stage: Stage = Stage.QUEUED


class Batcher:
    """Groups concurrent images into generator calls, per resolution, within a window, a queue limit and deadlines."""

    def __init__(self, run_batch: RunBatch, config: ServeBatching, metrics: ServeMetrics) -> None:
        self.run_batch = run_batch
        self.config = config
        self.metrics = metrics
        self._queues: dict[int, deque[Job]] = {}
        self._queued = 0
        self._arrival: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplear-generate")
        self._worker: asyncio.Task[None] | None = None
        self._last_batch_s = 0.0
        metrics.queue_depth.set_function(lambda: self._queued)

    @property
    def queued(self) -> int:
        """Images waiting for a generator call."""
        return self._queued

    async def submit(self, specs: list[ImageSpec]) -> list[Generated]:
        """Generate the images of one request, in order; QueueFull or DeadlineExceeded when that cannot be done."""
        limit = self.config.queue_limit
        if self._queued + len(specs) > limit:
            raise QueueFull(self._queued, limit, self._retry_after_s())
        self._start_worker()
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        jobs = [Job(spec=spec, future=loop.create_future(), arrived=now) for spec in specs]
        for job in jobs:
            self._queues.setdefault(job.spec.resolution, deque()).append(job)
        self._queued += len(jobs)
        self._arrival.set()
        try:
            _, pending = await asyncio.wait([job.future for job in jobs], timeout=self.config.deadline_s)
        finally:
            waited_in_queue = self._abandon(jobs)
        if pending:
            raise DeadlineExceeded(self.config.deadline_s, waited_in_queue)
        failures = [error for job in jobs if (error := job.future.exception()) is not None]
        if failures:
            raise failures[0]
        for resolution, count in Counter(spec.resolution for spec in specs).items():
            self.metrics.delivered(resolution, count)
        return [job.future.result() for job in jobs]

    def close(self) -> None:
        """Stop the worker and drop queued work (the running call finishes in its thread)."""
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _abandon(self, jobs: list[Job]) -> bool:
        """Withdraw a request's unfinished jobs: out of the queue, results dropped; True if one was still queued."""
        was_queued = False
        for job in jobs:
            if job.future.done():
                continue
            if job.stage is Stage.QUEUED:
                self._queues[job.spec.resolution].remove(job)
                self._queued -= 1
                was_queued = True
            self.metrics.expired.labels(stage=job.stage.value).inc()
            job.stage = Stage.ABANDONED
            job.future.cancel()
        return was_queued

    def _retry_after_s(self) -> int:
        """Seconds until the queue has likely drained by one request's worth, from the last call's duration."""
        calls_ahead = self._queued / self.config.max_batch + 1
        return max(1, math.ceil(calls_ahead * self._last_batch_s))

    def _start_worker(self) -> None:
        """Start the worker task and its wake-up event in the running loop, again if it ever stopped."""
        if self._worker is None or self._worker.done():
            self._arrival = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="simplear-batcher")
            self._worker.add_done_callback(self._worker_stopped)

    def _worker_stopped(self, worker: asyncio.Task[None]) -> None:
        """If the worker died, log why and fail the queued jobs rather than leave them to their deadline."""
        if worker.cancelled() or worker.exception() is None:
            return
        log.error("batcher worker stopped", exc_info=worker.exception())
        for queue in self._queues.values():
            while queue:
                job = queue.popleft()
                self._queued -= 1
                if not job.future.done():
                    job.future.set_exception(worker.exception())

    async def _work(self) -> None:
        """Forever: wait for work, then form and run batches until the queues are empty."""
        while True:
            await self._arrival.wait()
            self._arrival.clear()
            while jobs := await self._next_batch():
                await self._run(jobs)

    async def _next_batch(self) -> list[Job]:
        """Jobs of the resolution whose oldest job is oldest, once it has waited the window or the batch is full."""
        window = self.config.batch_window_ms / 1000.0
        while True:
            queue = min((q for q in self._queues.values() if q), key=lambda q: q[0].arrived, default=None)
            if queue is None:
                return []
            remaining = queue[0].arrived + window - time.monotonic()
            if remaining <= 0 or len(queue) >= self.config.max_batch:
                break
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), remaining)
        jobs = [queue.popleft() for _ in range(min(len(queue), self.config.max_batch))]
        self._queued -= len(jobs)
        for job in jobs:
            job.stage = Stage.RUNNING
        return jobs

    async def _run(self, jobs: list[Job]) -> None:
        """One generator call in the worker thread; results to the jobs still waiting, an error to all of them."""
        resolution = jobs[0].spec.resolution
        start = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.run_batch, [job.spec.request for job in jobs], resolution
            )
        except Exception as exc:
            log.exception("generation of a batch of %d images failed", len(jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._last_batch_s = time.perf_counter() - start
        self.metrics.batch_size.observe(len(jobs))
        self.metrics.batch_seconds.observe(self._last_batch_s)
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.stage = Stage.DONE
                job.future.set_result(result)
