"""`simplear serve --engine vllm` run by .venv-vllm's Python: the same routes with CFG inside vLLM."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import pixels, predict

from simplear.serve.process import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url(vllm_python: Path) -> Iterator[str]:
    """A vLLM-engine server on the tiny preset with random weights."""
    with ServerProcess(["--random-init", "--preset", "tiny", "--engine", "vllm", "--device", "cpu"],
                       python=vllm_python, startup_timeout_s=300) as server:
        yield server.url


def test_vllm_engine_serves_images_reproducibly_by_seed(url: str) -> None:
    """Same seed, same image (also when sent concurrently with others); another seed, another image."""
    first = predict(url, [{"prompt": "a red circle", "seed": 7, "cfg_scale": 3.0}])
    assert first.status_code == 200, first.text
    image = pixels(first.json()["predictions"][0]["image_b64"])
    assert image.shape == (64, 64, 3)
    bodies = [[{"prompt": "a red circle", "seed": 7, "cfg_scale": 3.0}]] + [
        [{"prompt": f"{k} blue squares", "seed": 100 + k, "cfg_scale": 5.0}] for k in range(5)
    ]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda body: predict(url, body), bodies))
    assert all(a.status_code == 200 for a in answers)
    assert (pixels(answers[0].json()["predictions"][0]["image_b64"]) == image).all()
    other = predict(url, [{"prompt": "a red circle", "seed": 8, "cfg_scale": 3.0}])
    assert not (pixels(other.json()["predictions"][0]["image_b64"]) == image).all()


def test_vllm_engine_refuses_bad_input_and_stays_healthy(url: str) -> None:
    """Validation is the server's, not the engine's: a bad value is a 400 and the next request succeeds."""
    assert predict(url, [{"prompt": "a cross", "top_p": 2.0}]).status_code == 400
    assert predict(url, [{"prompt": "a cross"}]).status_code == 200
