"""The batcher with the real tiny generator: windows, batch limits, resolutions, queue limit, deadlines, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from simplear.config import SamplingConfig, ServeBatching, ServeConfig, ServeLimits
from simplear.sampling.batch import Request
from simplear.serve.batcher import Batcher
from simplear.serve.errors import DeadlineExceeded, QueueFull
from simplear.serve.images import Generated, ImageGenerator, ImageSpec
from simplear.serve.loading import load_generator
from simplear.serve.metrics import ServeMetrics


@pytest.fixture(scope="module")
def generator() -> ImageGenerator:
    """The tiny preset's generator (random weights, palette tokenizer) serving 64 and 32 px."""
    config = ServeConfig(random_init=True, preset="tiny", device="cpu", limits=ServeLimits(resolutions=(64, 32)))
    return load_generator(config)[0]


class Calls:
    """The real generator, recording the size and resolution of each call it makes and counting finished ones."""

    def __init__(self, generator: ImageGenerator, gate: threading.Event | None = None) -> None:
        self.generator = generator
        self.gate = gate
        self.made: list[tuple[int, int]] = []
        self.finished = 0

    def __call__(self, requests: list[Request], resolution: int) -> list[Generated]:
        """Generate, after the gate opens when there is one."""
        if self.gate is not None:
            self.gate.wait(30)
        self.made.append((len(requests), resolution))
        results = self.generator.generate(requests, resolution)
        self.finished += 1
        return results


def spec(prompt: str, seed: int, resolution: int = 64) -> ImageSpec:
    """One image to make."""
    return ImageSpec(Request(prompt, SamplingConfig(seed=seed)), resolution)


def batcher(calls: Calls, **batching: float) -> tuple[Batcher, CollectorRegistry]:
    """A batcher over `calls` with its metrics in a private registry."""
    registry = CollectorRegistry()
    return Batcher(calls, ServeBatching(**batching), ServeMetrics(registry)), registry


def test_requests_within_the_window_share_one_call(generator: ImageGenerator) -> None:
    """Six requests arriving within the window are one generator call; each gets its own seed back."""
    calls = Calls(generator)
    batch, _ = batcher(calls, max_batch=16, batch_window_ms=300)

    async def run() -> list[list[Generated]]:
        return await asyncio.gather(*(batch.submit([spec(f"shape {i}", seed=i)]) for i in range(6)))

    results = asyncio.run(run())
    assert calls.made == [(6, 64)]
    assert [r[0].seed for r in results] == list(range(6))


def test_max_batch_splits_a_burst(generator: ImageGenerator) -> None:
    """Five images with max_batch 2 take three calls of at most two."""
    calls = Calls(generator)
    batch, _ = batcher(calls, max_batch=2, batch_window_ms=50)

    async def run() -> None:
        await asyncio.gather(*(batch.submit([spec("a square", seed=i)]) for i in range(5)))

    asyncio.run(run())
    assert sorted(size for size, _ in calls.made) == [1, 2, 2]


def test_resolutions_never_share_a_call(generator: ImageGenerator) -> None:
    """64 px and 32 px images arriving together are decoded in separate calls, each at its own size."""
    calls = Calls(generator)
    batch, _ = batcher(calls, max_batch=16, batch_window_ms=200)

    async def run() -> list[list[Generated]]:
        specs = [spec("a circle", seed=i, resolution=64 if i % 2 else 32) for i in range(6)]
        return await asyncio.gather(*(batch.submit([s]) for s in specs))

    results = asyncio.run(run())
    assert sorted(calls.made) == [(3, 32), (3, 64)]
    for i, (result,) in enumerate(results):
        assert result.resolution == (64 if i % 2 else 32)
        assert len(result.codes) == (16 * 16 if i % 2 else 8 * 8)
        assert result.image_b64


def test_batched_codes_equal_the_codes_alone(generator: ImageGenerator) -> None:
    """The same seed gives the same codes decoded alone or inside a batch."""
    alone_calls = Calls(generator)
    alone_batcher, _ = batcher(alone_calls, max_batch=1, batch_window_ms=0)
    together_calls = Calls(generator)
    together_batcher, _ = batcher(together_calls, max_batch=8, batch_window_ms=300)
    mine = spec("a pink cross", seed=77)

    async def alone() -> Generated:
        return (await alone_batcher.submit([mine]))[0]

    async def together() -> Generated:
        others = [together_batcher.submit([spec(f"other {i}", seed=i)]) for i in range(5)]
        results = await asyncio.gather(together_batcher.submit([mine]), *others)
        return results[0][0]

    assert asyncio.run(alone()).codes == asyncio.run(together()).codes
    assert together_calls.made == [(6, 64)]


def test_full_queue_refuses_a_whole_request(generator: ImageGenerator) -> None:
    """With 2 of 3 places taken, a 2-image request is refused whole and a 1-image request still admitted."""
    calls = Calls(generator)
    batch, registry = batcher(calls, max_batch=16, batch_window_ms=500, queue_limit=3)

    async def run() -> tuple[int, str, list[Generated], list[Generated]]:
        first = asyncio.create_task(batch.submit([spec("a", 1), spec("b", 2)]))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as refused:
            await batch.submit([spec("c", 3), spec("d", 4)])
        assert registry.get_sample_value("simplear_serve_queue_depth") == 2
        last = await batch.submit([spec("e", 5)])
        return refused.value.retry_after_s, str(refused.value), await first, last

    retry_after, message, first, last = asyncio.run(run())
    assert retry_after >= 1 and "2 images queued (limit 3)" in message
    assert [g.seed for g in first] == [1, 2] and [g.seed for g in last] == [5]
    assert calls.made == [(3, 64)]
    assert batch.queued == 0


def test_deadline_withdraws_queued_images_before_any_work(generator: ImageGenerator) -> None:
    """Images still waiting at their deadline leave the queue unanswered by the generator: only the running call ran."""
    gate = threading.Event()
    calls = Calls(generator, gate)
    batch, registry = batcher(calls, max_batch=1, batch_window_ms=0, deadline_s=0.5)

    async def run() -> tuple[BaseException | list[Generated], ...]:
        running = asyncio.create_task(batch.submit([spec("running", 1)]))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(batch.submit([spec("waiting", 2), spec("waiting too", 3)]))
        outcome = await asyncio.gather(running, waiting, return_exceptions=True)
        gate.set()
        while calls.finished < 1:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        return tuple(outcome)

    start = time.monotonic()
    running, waiting = asyncio.run(run())
    assert time.monotonic() - start < 5
    assert isinstance(running, DeadlineExceeded) and "while being generated" in str(running)
    assert isinstance(waiting, DeadlineExceeded) and "waiting in the queue" in str(waiting)
    assert batch.queued == 0
    assert registry.get_sample_value("simplear_serve_expired_images_total", {"stage": "queued"}) == 2
    assert registry.get_sample_value("simplear_serve_expired_images_total", {"stage": "running"}) == 1
    assert calls.made == [(1, 64)]


def test_deadline_while_running_keeps_the_batch_for_the_others(generator: ImageGenerator) -> None:
    """A request expiring inside a running call is answered at once; the call finishes for the other request."""
    gate = threading.Event()
    calls = Calls(generator, gate)
    batch, registry = batcher(calls, max_batch=2, batch_window_ms=3500, deadline_s=4.0)

    async def run() -> tuple[BaseException | list[Generated], ...]:
        early = asyncio.create_task(batch.submit([spec("early", 1)]))
        await asyncio.sleep(3.0)
        late = asyncio.create_task(batch.submit([spec("late", 2)]))
        done, _ = await asyncio.wait([early], timeout=10)
        assert early in done
        gate.set()
        return tuple(await asyncio.gather(early, late, return_exceptions=True))

    early, late = asyncio.run(run())
    assert isinstance(early, DeadlineExceeded) and "while being generated" in str(early)
    assert [g.seed for g in late] == [2]
    assert calls.made == [(2, 64)]
    assert registry.get_sample_value("simplear_serve_expired_images_total", {"stage": "running"}) == 1
    assert registry.get_sample_value("simplear_serve_images_total", {"resolution": "64"}) == 1


def test_a_failing_call_fails_its_requests_and_the_batcher_goes_on(generator: ImageGenerator) -> None:
    """An image of no codes (a 0 px resolution validation would refuse) fails its call; the next one is served."""
    calls = Calls(generator)
    batch, _ = batcher(calls, max_batch=1, batch_window_ms=0)

    async def run() -> list[Generated]:
        with pytest.raises(IndexError):
            await batch.submit([spec("a square", 1, resolution=0)])
        return await batch.submit([spec("a short one", 2)])

    assert [g.seed for g in asyncio.run(run())] == [2]
    assert len(calls.made) == 2
