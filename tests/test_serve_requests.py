"""How the real server (tiny preset, 16 px) reads requests: no malformed body gets a 500, clear 4xx messages that
are logged in one line, one content-type rule on every route, 405s, and images counted only once served."""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simplear.serve.process import ServerProcess

pytestmark = pytest.mark.slow
TINY = ["--random-init", "--preset", "tiny", "--resolutions", "16", "--device", "cpu"]
TIMEOUT = 60
V1 = "/v1/models/simplear:predict"
V2 = "/v2/models/simplear/infer"
OPENAI = "/openai/v1/images/generations"


@pytest.fixture(scope="module")
def servers(all_serving: Callable) -> Iterator[dict[str, ServerProcess]]:
    """A server for bad requests (two images per request at most) and one decoding one image per call (2 s deadline)."""
    started = {
        "main": ServerProcess([*TINY, "--max-images-per-request", "2"]),
        "serial": ServerProcess([*TINY, "--max-batch", "1", "--batch-window-ms", "0", "--deadline-s", "2",
                                 "--max-images-per-request", "64"]),
    }
    with all_serving(started) as serving:
        yield serving


@pytest.fixture(scope="module")
def url(servers: dict[str, ServerProcess]) -> str:
    """Base URL of the main server."""
    return servers["main"].url


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of the server's /metrics (0 when absent)."""
    text = requests.get(f"{url}/metrics", timeout=TIMEOUT).text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def bytes_elements(*texts: bytes) -> bytes:
    """BYTES elements in the binary tensor extension: each a 4-byte little-endian length and its bytes."""
    return b"".join(struct.pack("<I", len(text)) + text for text in texts)


def binary(header: dict, tail: bytes, length: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body and its headers (the header length given, or the true one)."""
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)) if length is None else length,
               "Content-Type": "application/octet-stream"}
    return head + tail, headers


def error_message(response: requests.Response) -> str:
    """The message of an error answer: `{"error": str}`, or OpenAI's `{"error": {"message": str}}`."""
    error = response.json()["error"]
    return error["message"] if isinstance(error, dict) else error


# ---- 1. no malformed request gets a 500 (property-based, every route)

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
FIELDS = ("prompt", "negative_prompt", "seed", "cfg_scale", "temperature", "top_k", "top_p", "resolution", "n",
          "size", "model", "response_format", "output_format", "user", "guidance")
instances = st.dictionaries(st.sampled_from(FIELDS), scalars | st.just("a red square") | st.just(16), max_size=4)
DATATYPES = ("BYTES", "INT64", "INT32", "UINT64", "UINT32", "FP32", "FP64", "FP16", "BOOL", "INT8", "STRING", "")
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(("prompt", "seed", "cfg_scale", "top_k", "resolution", "steps")),
     "shape": st.lists(st.integers(-2, 3), max_size=3), "datatype": st.sampled_from(DATATYPES)},
    optional={"data": json_values | st.lists(scalars | st.just("a red square"), max_size=3),
              "parameters": st.dictionaries(st.sampled_from((*FIELDS, "binary_data_size")), scalars, max_size=2)},
)
v2_requests = st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=3)},
                                    optional={"parameters": st.dictionaries(st.sampled_from(FIELDS), scalars,
                                                                            max_size=2),
                                              "outputs": st.lists(st.fixed_dictionaries(
                                                  {"name": st.sampled_from(("image", "seed", "codes", "x"))}),
                                                  max_size=2),
                                              "id": scalars})
CONTENT_TYPES = ("application/json", "application/json; charset=utf-8", "text/plain", "application/octet-stream",
                 "application/x-www-form-urlencoded", "")


def encoded(value: object) -> bytes:
    """JSON text of a generated value (NaN and infinities included, which are not JSON)."""
    return json.dumps(value).encode()


@st.composite
def binary_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request whose header, sizes, length prefixes and header length are fuzzed."""
    header = draw(v2_requests)
    for tensor in header["inputs"]:
        if draw(st.booleans()):
            tensor.pop("data", None)
            tensor["parameters"] = {"binary_data_size": draw(st.integers(-4, 40) | scalars)}
    tail = draw(st.binary(max_size=48) | st.lists(st.binary(max_size=8), max_size=3).map(lambda t: bytes_elements(*t))
                | st.builds(lambda n, rest: struct.pack("<I", n) + rest, st.integers(0, 2**32 - 1),
                            st.binary(max_size=8)))
    head = encoded(header)
    length = draw(st.just(str(len(head))) | st.integers(-3, len(head) + 60).map(str)
                  | st.from_regex(r"[0-9a-z+.-]{1,6}", fullmatch=True))
    return head + tail, {"Inference-Header-Content-Length": length,
                         "Content-Type": draw(st.sampled_from(CONTENT_TYPES))}


@st.composite
def any_request(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """A request to one of the generation routes: JSON-ish, binary or raw bytes, under any content type."""
    route = draw(st.sampled_from(("v1", "v2", "v2 binary", "openai")))
    if route == "v2 binary":
        body, headers = draw(binary_requests())
        return V2, body, headers
    path, structured = {"v1": (V1, st.fixed_dictionaries({"instances": st.lists(instances, max_size=3)})),
                        "v2": (V2, v2_requests), "openai": (OPENAI, instances)}[route]
    body = draw(structured.map(encoded) | json_values.map(encoded) | st.binary(max_size=40)
                | structured.map(encoded).map(lambda raw: raw[: len(raw) // 2] + b"\xff" + raw[len(raw) // 2 :]))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return path, body, {"Content-Type": content_type} if content_type else {}


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=any_request())
def test_no_request_body_gets_a_server_error(url: str, request: tuple[str, bytes, dict[str, str]]) -> None:
    """Whatever a client sends to v1, v2 (JSON or binary) or OpenAI: an answer, or a 4xx that says what is wrong."""
    path, body, headers = request
    response = requests.post(url + path, data=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.status_code in (400, 404, 413) and error_message(response), response.text


# ---- 1 and 5. the reported cases, one content-type rule, 405, and non-UTF-8 bodies

PROMPT_HEADER = {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES",
                             "parameters": {"binary_data_size": 8}}]}
NOT_UTF8 = b'{"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["\xff"]}]}'
CASES = [
    ("binary header length not a number", V2, *binary(PROMPT_HEADER, bytes_elements(b"abcd"), "abc"), 400,
     "Inference-Header-Content-Length must be a byte count, got 'abc'"),
    ("binary length prefix past the data", V2, *binary(PROMPT_HEADER, struct.pack("<I", 16) + b"abcd"), 400,
     "input 'prompt': element 0 says 16 bytes, but only 4 bytes of its binary data are left"),
    ("binary header length past the body", V2, *binary(PROMPT_HEADER, bytes_elements(b"abcd"), "500"), 400,
     "Inference-Header-Content-Length 500 is outside the"),
    ("v2 not UTF-8", V2, NOT_UTF8, {"Content-Type": "application/json"}, 400,
     "body is not UTF-8 text: byte 0xff at position 76"),
    ("v2 not UTF-8 as text", V2, NOT_UTF8, {"Content-Type": "text/plain"}, 400, "body is not UTF-8 text: byte 0xff"),
    ("v1 not UTF-8", V1, b'{"instances": [{"prompt": "\xff"}]}', {}, 400, "body is not UTF-8 text: byte 0xff"),
    ("openai not UTF-8", OPENAI, b'{"prompt": "\xff"}', {}, 400, "body is not UTF-8 text: byte 0xff"),
    ("v1 JSON as text/plain", V1, encoded({"instances": [{"prompt": "a", "seed": 1}]}),
     {"Content-Type": "text/plain"}, 200, ""),
    ("v1 JSON with a charset", V1, encoded({"instances": [{"prompt": "a", "seed": 1}]}),
     {"Content-Type": "application/json; charset=utf-8"}, 200, ""),
    ("v2 JSON as text/plain", V2, encoded({"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES",
                                                       "data": ["a"]}]}), {"Content-Type": "text/plain"}, 200, ""),
    ("openai JSON as text/plain", OPENAI, encoded({"prompt": "a"}), {"Content-Type": "text/plain"}, 200, ""),
    ("v1 not JSON as text/plain", V1, b"prompt=a", {"Content-Type": "text/plain"}, 400, "body is not valid JSON"),
    ("v2 not JSON as text/plain", V2, b"prompt=a", {"Content-Type": "text/plain"}, 400, "body is not valid JSON"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_request_bodies_are_read_alike_on_every_route(
    url: str, path: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = requests.post(url + path, data=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == status, response.text
    if status != 200:
        assert message in error_message(response), response.text


@pytest.mark.parametrize("path", [V1, V2, OPENAI])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_the_generation_routes_get_405(url: str, path: str, method: str) -> None:
    response = requests.request(method, url + path, timeout=TIMEOUT)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert response.json() == {"error": f"method {method} is not allowed on {path}; use POST"}


# ---- 4. client errors are one log line each

BAD_BATCH = [
    (V1, encoded({"instances": [{"prompt": "a", "guidance": 3}]}), {}, "instances[0].guidance: unknown field"),
    (V2, encoded({"inputs": [{"name": "steps", "shape": [1], "datatype": "INT64", "data": [3]}]}), {},
     "unknown input 'steps'"),
    (V2, *binary(PROMPT_HEADER, struct.pack("<I", 16) + b"abcd"), "element 0 says 16 bytes"),
    (V2, NOT_UTF8, {"Content-Type": "application/json"}, "body is not UTF-8 text"),
    (OPENAI, encoded({"prompt": "a", "size": "1024x1024"}), {}, "size '1024x1024'"),
]


def test_client_errors_are_logged_as_one_warning_line(servers: dict[str, ServerProcess]) -> None:
    """40 bad requests: each one WARNING line with method, route and reason; no traceback, no ERROR; < 800 B each."""
    server = servers["main"]
    before = server.log_path.stat().st_size
    rounds = 8
    for _ in range(rounds):
        for path, body, headers, _reason in BAD_BATCH:
            assert requests.post(server.url + path, data=body, headers=headers, timeout=TIMEOUT).status_code == 400
    time.sleep(1.0)
    with server.log_path.open("rb") as log:
        log.seek(before)
        written = log.read().decode(errors="replace")
    count = rounds * len(BAD_BATCH)
    assert "Traceback" not in written and " ERROR " not in written
    warnings = [line for line in written.splitlines() if " WARNING " in line]
    assert len(warnings) == count, warnings[:5]
    for path, _body, _headers, reason in BAD_BATCH:
        assert sum(f"400 POST {path}: " in line and reason in line for line in warnings) == rounds, (path, reason)
    assert len(written.encode()) / count < 800, f"{len(written.encode()) / count:.0f} log bytes per bad request"


# ---- 7. images are counted once served, not when their client left or their deadline passed


def test_images_are_counted_only_when_served(servers: dict[str, ServerProcess]) -> None:
    """64 images one per sampler call: cut by the 2 s deadline, or by a client leaving after 1 s, none is counted."""
    url = servers["serial"].url
    images = 'simplear_serve_images_total'
    body = {"instances": [{"prompt": f"a red square {i}", "seed": i} for i in range(64)]}
    calls = metric(url, "simplear_serve_batch_size_count")
    response = requests.post(url + V1, json=body, timeout=TIMEOUT)
    assert response.status_code == 504, response.text
    assert metric(url, "simplear_serve_batch_size_count") - calls >= 2, "images were generated before the deadline"
    assert metric(url, images, '{resolution="16"}') == 0
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url + V1, json=body, timeout=1.0)
    deadline = time.monotonic() + 10
    while metric(url, "simplear_serve_errors_total", '{code="499",route="v1_predict"}') < 1:
        assert time.monotonic() < deadline, "the server did not see the client leave"
        time.sleep(0.05)
    assert metric(url, images, '{resolution="16"}') == 0
    served = requests.post(url + V1, json={"instances": body["instances"][:2]}, timeout=TIMEOUT)
    assert served.status_code == 200
    assert metric(url, images, '{resolution="16"}') == 2
