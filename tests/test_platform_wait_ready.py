"""wait_ready, the GRPO trainer's init container: done once the rollout server answers, failed if it never does."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simplear.platform.wait_ready import wait_ready


class Health(BaseHTTPRequestHandler):
    """/health answers 200 once the server's `ready_at` has passed, 503 before."""

    def do_GET(self) -> None:
        """Answer /health."""
        ready = time.monotonic() >= self.server.ready_at  # type: ignore[attr-defined]
        self.send_response(200 if ready and self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def slow_server() -> Iterator[ThreadingHTTPServer]:
    """A server that turns healthy one second after it starts."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    server.ready_at = time.monotonic() + 1.0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_waits_until_the_server_turns_healthy(slow_server: ThreadingHTTPServer) -> None:
    """503s are waited through; 200 ends the wait."""
    started = time.monotonic()
    assert wait_ready(f"http://127.0.0.1:{slow_server.server_port}/health", timeout_s=10, poll_s=0.1)
    assert 0.9 <= time.monotonic() - started < 5


def test_gives_up_after_the_timeout() -> None:
    """Nothing listening: False after about the timeout."""
    started = time.monotonic()
    assert not wait_ready(f"http://127.0.0.1:{closed_port()}/health", timeout_s=0.5, poll_s=0.1)
    assert time.monotonic() - started < 3


def test_module_exits_non_zero_with_a_message_when_never_ready() -> None:
    """`python -m simplear.platform.wait_ready` as the init container runs it."""
    url = f"http://127.0.0.1:{closed_port()}/health"
    result = subprocess.run([sys.executable, "-m", "simplear.platform.wait_ready", url, "--timeout", "0.3",
                             "--poll", "0.1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.strip() == f"{url} did not answer 200 within 0.3 s"
