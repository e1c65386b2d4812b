"""One CUDA graph per attention-length bucket of the decode step, captured on first use and replayed after."""

from __future__ import annotations

from collections.abc import Callable

import torch


class StepGraphs:
    """Replays a captured decode step; a bucket's first call runs the step eagerly (the warm-up), then captures it."""

    def __init__(self) -> None:
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._pool: tuple | None = None

    def run(self, bucket: int, step: Callable[[], None]) -> None:
        """Perform one decode step for attention length `bucket`."""
        graph = self._graphs.get(bucket)
        if graph is not None:
            graph.replay()
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            step()
        self._pool = graph.pool()
        self._graphs[bucket] = graph
