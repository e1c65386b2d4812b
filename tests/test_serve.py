"""`simplear serve` as a real server on 127.0.0.1 (tiny preset), through real clients: requests, KServe, openai."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest
import requests
from helpers import pixels, predict
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from simplear.serve.process import ServerProcess

pytestmark = pytest.mark.slow
TINY = ["--random-init", "--preset", "tiny"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def servers(all_serving: Callable) -> Iterator[dict[str, ServerProcess]]:
    """Started together: the main one (64 and 32 px), a tiny queue on two addresses, a short deadline, one at a time."""
    started = {
        "main": ServerProcess([*TINY, "--resolutions", "64", "32"]),
        "busy": ServerProcess([*TINY, "--max-batch", "1", "--batch-window-ms", "0", "--queue-limit", "2",
                               "--host", "127.0.0.2"]),
        "slow": ServerProcess([*TINY, "--max-batch", "1", "--batch-window-ms", "0", "--deadline-s", "0.5"]),
        "serial": ServerProcess([*TINY, "--max-batch", "1", "--batch-window-ms", "0"]),
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


def sampler_calls(url: str) -> float:
    """Sampler calls so far: the count of the batch-size histogram."""
    return metric(url, "simplear_serve_batch_size_count")


def healthy(url: str) -> bool:
    """KServe's liveness, readiness and model readiness all answer 200."""
    routes = ("/v2/health/live", "/v2/health/ready", "/v2/models/simplear/ready", "/v1/models/simplear")
    return all(requests.get(url + route, timeout=TIMEOUT).status_code == 200 for route in routes)


def outbound_address() -> str | None:
    """This machine's non-loopback IPv4 address, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_health_routes_answer(url: str) -> None:
    """Liveness, readiness and model readiness are KServe's own routes."""
    assert healthy(url)
    assert requests.get(f"{url}/v2/health/live", timeout=TIMEOUT).json() == {"live": True}


def test_server_listens_on_the_given_addresses_only(servers: dict[str, ServerProcess]) -> None:
    """--host binds exactly its addresses (several when repeated); the machine's other address refuses."""
    busy = servers["busy"]
    assert requests.get(f"http://127.0.0.2:{busy.port}/v2/health/ready", timeout=TIMEOUT).status_code == 200
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", servers["main"].port), timeout=5):
        pass
    address = outbound_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    for server in (servers["main"], busy):
        with pytest.raises(OSError), socket.create_connection((address, server.port), timeout=5):
            pass


def test_v1_predict_answers_pngs_with_seeds_that_reproduce(url: str) -> None:
    """v1: one PNG per instance at its resolution; a given seed is echoed, a missing one drawn and returned."""
    response = predict(url, [{"prompt": "a red square", "seed": 11}, {"prompt": "a blue circle", "resolution": 32}])
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert first["seed"] == 11 and first["resolution"] == 64
    assert pixels(first["image_b64"]).shape == (64, 64, 3)
    assert pixels(second["image_b64"]).shape == (32, 32, 3)
    assert isinstance(second["seed"], int) and 0 <= second["seed"] < 2**32
    again = predict(url, [{"prompt": "a blue circle", "resolution": 32, "seed": second["seed"]}]).json()
    assert np.array_equal(pixels(again["predictions"][0]["image_b64"]), pixels(second["image_b64"]))


def test_v2_infer_through_kserve_rest_client(url: str) -> None:
    """v2 with KServe's InferenceRESTClient: BYTES prompts, per-row seeds, a shared parameter; same image as v1."""
    prompts = InferInput("prompt", [2], "BYTES", ["a red square", "a green cross"], parameters={"cfg_scale": 3.0})
    seeds = InferInput("seed", [2], "INT64", [5, 6])
    request = InferRequest(model_name="simplear", infer_inputs=[prompts, seeds], request_id="r-1")

    async def call() -> object:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=TIMEOUT))
        try:
            return await client.infer(url, request, model_name="simplear")
        finally:
            await client.close()

    response = asyncio.run(call())
    assert response.id == "r-1"
    outputs = {output.name: output for output in response.outputs}
    assert [o.name for o in response.outputs] == ["image", "seed", "resolution"]
    assert outputs["image"].datatype == "BYTES" and outputs["image"].shape == [2]
    assert list(outputs["seed"].data) == [5, 6] and list(outputs["resolution"].data) == [64, 64]
    images = [pixels(text) for text in outputs["image"].data]
    assert all(image.shape == (64, 64, 3) for image in images)
    v1 = predict(url, [{"prompt": "a red square", "seed": 5, "cfg_scale": 3.0}]).json()["predictions"][0]
    assert np.array_equal(pixels(v1["image_b64"]), images[0])


def test_v2_binary_tensor_extension(url: str) -> None:
    """Binary inputs and binary outputs (KServe's binary tensor extension) carry the same contract."""
    prompt = InferInput("prompt", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"a red square"], dtype=np.object_), binary_data=True)
    seed = InferInput("seed", [1], "INT64")
    seed.set_data_from_numpy(np.array([4], dtype=np.int64), binary_data=True)
    request = InferRequest(model_name="simplear", infer_inputs=[prompt, seed], parameters={"binary_data_output": True})

    async def call() -> object:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=TIMEOUT))
        try:
            return await client.infer(url, request, model_name="simplear")
        finally:
            await client.close()

    outputs = {output.name: output for output in asyncio.run(call()).outputs}
    assert list(outputs["seed"].data) == [4]
    v1 = predict(url, [{"prompt": "a red square", "seed": 4}]).json()["predictions"][0]
    assert np.array_equal(pixels(outputs["image"].data[0]), pixels(v1["image_b64"]))


def test_openai_client_generates_images(url: str) -> None:
    """The openai package's images.generate works against /openai/v1, with size, n and a seed in extra_body."""
    client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
    result = client.images.generate(
        model="simplear", prompt="a yellow triangle", n=2, size="32x32", response_format="b64_json",
        extra_body={"seed": 40},
    )
    assert len(result.data) == 2 and result.size == "32x32"
    assert all(pixels(image.b64_json).shape == (32, 32, 3) for image in result.data)
    assert [image.model_extra["seed"] for image in result.data] == [40, 41]
    with pytest.raises(openai.BadRequestError, match="size '100x100'"):
        client.images.generate(model="simplear", prompt="a yellow triangle", size="100x100")


def test_concurrent_requests_share_sampler_calls(url: str) -> None:
    """64 requests from 16 threads all succeed, decoded in fewer sampler calls than requests."""
    calls_before = sampler_calls(url)
    images_before = metric(url, "simplear_serve_images_total", '{resolution="64"}')
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: predict(url, [{"prompt": f"shape number {i}", "seed": i}]), range(64)))
    assert [r.status_code for r in responses] == [200] * 64
    assert [r.json()["predictions"][0]["seed"] for r in responses] == list(range(64))
    calls = sampler_calls(url) - calls_before
    assert 1 <= calls < 64
    assert metric(url, "simplear_serve_images_total", '{resolution="64"}') - images_before == 64
    assert metric(url, "simplear_serve_images_per_second") > 0


def test_batched_image_equals_the_image_alone(url: str) -> None:
    """A fixed seed gives the same image alone and inside a batch of requests with other parameters."""
    mine = {"prompt": "a purple circle above a white square", "seed": 1234, "cfg_scale": 4.0, "top_k": 8}
    alone = pixels(predict(url, [mine]).json()["predictions"][0]["image_b64"])
    others = [
        {"prompt": "a red cross", "seed": 1, "cfg_scale": 1.0},
        {"prompt": "a tiny green square", "seed": 2, "temperature": 0.5},
        {"prompt": "two blue circles", "seed": 3, "top_p": 0.8, "negative_prompt": ""},
        {"prompt": "one black triangle", "seed": 4, "temperature": 0.0},
        {"prompt": "a small pink cross", "seed": 5, "resolution": 32},
        {"prompt": "an orange circle", "seed": 6, "cfg_scale": 9.0, "top_k": 3},
        {"prompt": "a gray square", "seed": 7},
    ]
    calls_before = sampler_calls(url)
    barrier = threading.Barrier(len(others) + 1)

    def send(instance: dict) -> requests.Response:
        barrier.wait()
        return predict(url, [instance])

    with ThreadPoolExecutor(len(others) + 1) as pool:
        responses = list(pool.map(send, [mine, *others]))
    assert all(r.status_code == 200 for r in responses)
    assert sampler_calls(url) - calls_before < len(responses)
    assert np.array_equal(pixels(responses[0].json()["predictions"][0]["image_b64"]), alone)
    assert pixels(responses[5].json()["predictions"][0]["image_b64"]).shape == (32, 32, 3)


V1 = "/v1/models/simplear:predict"
V2 = "/v2/models/simplear/infer"
OPENAI = "/openai/v1/images/generations"


def v2_body(*inputs: dict, **extra: object) -> dict:
    """A v2 request body."""
    return {"inputs": list(inputs), **extra}


def prompt_input(*prompts: str, **extra: object) -> dict:
    """The v2 prompt input."""
    return {"name": "prompt", "shape": [len(prompts)], "datatype": "BYTES", "data": list(prompts), **extra}


BAD_REQUESTS = [
    ("v1 empty prompt", V1, {"instances": [{"prompt": ""}]}, "instances[0].prompt is empty"),
    ("v1 blank prompt", V1, {"instances": [{"prompt": "   "}]}, "prompt is empty"),
    ("v1 prompt too long", V1, {"instances": [{"prompt": "a" * 4001}]}, "4001 characters; at most 4000"),
    ("v1 prompt too many tokens", V1, {"instances": [{"prompt": "\u4e00\u4e8c" * 300}]}, "tokens; at most 512"),
    ("v1 unknown field", V1, {"instances": [{"prompt": "a", "guidance": 3}]}, "instances[0].guidance: unknown field"),
    ("v1 unknown top-level field", V1, {"instances": [{"prompt": "a"}], "params": {}}, "params: unknown field"),
    ("v1 cfg out of range", V1, {"instances": [{"prompt": "a", "cfg_scale": 101}]}, "cfg_scale: Input should be less"),
    ("v1 negative seed", V1, {"instances": [{"prompt": "a", "seed": -1}]}, "seed: Input should be greater"),
    ("v1 top_p zero", V1, {"instances": [{"prompt": "a", "top_p": 0}]}, "top_p: Input should be greater"),
    ("v1 string number", V1, {"instances": [{"prompt": "a", "temperature": "1"}]}, "temperature: Input should be"),
    ("v1 top_k beyond the codebook", V1, {"instances": [{"prompt": "a", "top_k": 17}]}, "top_k 17 is above the 16"),
    ("v1 float seed", V1, {"instances": [{"prompt": "a", "seed": 1.5}]}, "seed: Input should be a valid integer"),
    ("v1 prompt not text", V1, {"instances": [{"prompt": 5}]}, "prompt: Input should be a valid string"),
    ("v1 no instances", V1, {"instances": []}, "instances: List should have at least 1 item"),
    ("v1 too many images", V1, {"instances": [{"prompt": "a"}] * 9}, "9 images asked; at most 8"),
    ("v1 unsupported resolution", V1, {"instances": [{"prompt": "a", "resolution": 48}]}, "resolution 48 is not"),
    ("v1 body is a list", V1, [{"prompt": "a"}], "expected a JSON object"),
    ("v1 malformed JSON", V1, b'{"instances": [', "body is not valid JSON"),
    ("v2 malformed JSON", V2, b'{"inputs": [', "body is not valid JSON"),
    ("v2 no prompt input", V2, v2_body({"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}),
     "input 'prompt' (BYTES, shape [N]) is required"),
    ("v2 empty prompt", V2, v2_body(prompt_input("")), "row[0].prompt is empty"),
    ("v2 unknown input", V2, v2_body(prompt_input("a"), {"name": "steps", "shape": [1], "datatype": "INT64",
                                                          "data": [3]}), "unknown input 'steps'"),
    ("v2 prompt not BYTES", V2, v2_body({"name": "prompt", "shape": [1], "datatype": "INT64", "data": [3]}),
     "datatype INT64; expected BYTES"),
    ("v2 shape mismatch", V2, v2_body({**prompt_input("a", "b"), "shape": [3]}), "shape [3] but 2 values"),
    ("v2 rows mismatch", V2, v2_body(prompt_input("a", "b"), {"name": "seed", "shape": [1], "datatype": "INT64",
                                                              "data": [1]}), "'seed' has 1 values for 2 prompts"),
    ("v2 unknown parameter", V2, v2_body(prompt_input("a"), parameters={"steps": 3}), "unknown parameter 'steps'"),
    ("v2 parameter out of range", V2, v2_body(prompt_input("a", parameters={"top_p": 1.5})),
     "row[0].top_p: Input should be less"),
    ("v2 parameter twice", V2, v2_body(prompt_input("a", parameters={"seed": 1}), parameters={"seed": 2}),
     "parameter 'seed' is given twice"),
    ("v2 too many images", V2, v2_body(prompt_input(*["a"] * 9)), "9 images asked; at most 8"),
    ("v2 unknown output", V2, v2_body(prompt_input("a"), outputs=[{"name": "latents"}]), "unknown outputs"),
    ("v2 missing data", V2, v2_body({"name": "prompt", "shape": [1], "datatype": "BYTES"}), "data: Field required"),
    ("openai malformed JSON", OPENAI, b'{"prompt": ', "body is not valid JSON"),
    ("openai empty prompt", OPENAI, {"prompt": ""}, "prompt is empty"),
    ("openai too many images", OPENAI, {"prompt": "a", "n": 9}, "9 images asked; at most 8"),
    ("openai zero images", OPENAI, {"prompt": "a", "n": 0}, "n: Input should be greater than or equal to 1"),
    ("openai unsupported size", OPENAI, {"prompt": "a", "size": "1024x1024"}, "served sizes: 64x64, 32x32"),
    ("openai non-square size", OPENAI, {"prompt": "a", "size": "64x32"}, "is not square"),
    ("openai size not WxH", OPENAI, {"prompt": "a", "size": "large"}, "is not WIDTHxHEIGHT"),
    ("openai url format", OPENAI, {"prompt": "a", "response_format": "url"}, "response_format: Input should be"),
    ("openai unknown field", OPENAI, {"prompt": "a", "quality": "hd"}, "quality: unknown field"),
    ("openai other model", OPENAI, {"prompt": "a", "model": "dall-e-3"}, "model 'dall-e-3' is not served"),
]


@pytest.mark.parametrize(("route", "body", "expected"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_answers_400_saying_what_is_wrong(url: str, route: str, body: object, expected: str) -> None:
    """Each bad request gets 400 with a message naming the problem, and the server stays healthy."""
    if isinstance(body, bytes):
        response = requests.post(url + route, data=body, headers={"content-type": "application/json"},
                                 timeout=TIMEOUT)
    else:
        response = requests.post(url + route, json=body, timeout=TIMEOUT)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    message = error["message"] if route == OPENAI else error
    assert expected in message
    assert requests.get(f"{url}/v2/health/live", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_answers_413_before_it_is_parsed(url: str, streamed: bool) -> None:
    """A body over the 1 MiB default is refused, whether its size is declared or only seen while it streams in."""
    body = json.dumps({"instances": [{"prompt": "x" * (1 << 20)}]}).encode()
    data = (body[i : i + 65536] for i in range(0, len(body), 65536)) if streamed else body
    response = requests.post(f"{url}/v1/models/simplear:predict", data=data,
                             headers={"content-type": "application/json"}, timeout=TIMEOUT)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == f"request body larger than {1 << 20} bytes"
    assert metric(url, "simplear_serve_errors_total", '{code="413",route="v1_predict"}') >= 1


def test_still_generates_after_bad_requests(url: str) -> None:
    """After the bad requests the server is healthy and generates."""
    assert healthy(url)
    assert predict(url, [{"prompt": "a white circle", "seed": 3}]).status_code == 200
    assert metric(url, "simplear_serve_errors_total", '{code="400",route="v1_predict"}') >= 1


def test_metrics_expose_the_named_families(url: str) -> None:
    """/metrics has requests, errors, latency, images/s, queue depth and batch size."""
    text = requests.get(f"{url}/metrics", timeout=TIMEOUT).text
    for family in (
        "simplear_serve_requests_total", "simplear_serve_errors_total", "simplear_serve_request_seconds_bucket",
        "simplear_serve_images_total", "simplear_serve_images_per_second", "simplear_serve_queue_depth",
        "simplear_serve_batch_size_bucket", "simplear_serve_batch_seconds_bucket",
    ):
        assert re.search(rf"^{family}[{{ ]", text, re.MULTILINE), family
    assert metric(url, "simplear_serve_requests_total", '{code="200",route="openai_images"}') >= 1
    assert metric(url, "simplear_serve_requests_total", '{code="200",route="v2_infer"}') >= 1
    assert metric(url, "simplear_serve_queue_depth") == 0


def concurrent_predicts(url: str, count: int) -> list[requests.Response]:
    """`count` single-image requests released together from as many threads."""
    barrier = threading.Barrier(count)

    def send(i: int) -> requests.Response:
        barrier.wait()
        return predict(url, [{"prompt": f"a red square number {i}", "seed": i}])

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def test_full_queue_answers_503_with_retry_after(servers: dict[str, ServerProcess]) -> None:
    """With room for 2 waiting images, a burst of 12 gets some 503s with Retry-After; the rest succeed."""
    url = servers["busy"].url
    responses = concurrent_predicts(url, 12)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
    for refused in (r for r in responses if r.status_code == 503):
        assert int(refused.headers["Retry-After"]) >= 1
        assert "queued (limit 2)" in refused.json()["error"]
    assert healthy(url)
    assert predict(url, [{"prompt": "after the burst", "seed": 1}]).status_code == 200
    assert metric(url, "simplear_serve_queue_depth") == 0
    assert metric(url, "simplear_serve_errors_total", '{code="503",route="v1_predict"}') == codes.count(503)


def test_deadline_answers_504_and_skips_queued_work(servers: dict[str, ServerProcess]) -> None:
    """Past the 0.5 s deadline requests get 504; the ones still queued are never decoded; the server stays up."""
    url = servers["slow"].url
    responses = concurrent_predicts(url, 8)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 504} and 504 in codes, codes
    assert all("deadline of 0.5 s exceeded" in r.json()["error"] for r in responses if r.status_code == 504)
    expired_queued = metric(url, "simplear_serve_expired_images_total", '{stage="queued"}')
    assert expired_queued >= 1
    assert sampler_calls(url) <= 8 - expired_queued
    assert healthy(url)
    assert metric(url, "simplear_serve_queue_depth") == 0


def test_a_client_that_leaves_gets_its_queued_images_dropped(servers: dict[str, ServerProcess]) -> None:
    """A request whose client times out while it waits behind eight images is withdrawn and never decoded."""
    url = servers["serial"].url
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(predict, url, [{"prompt": f"a blue cross {i}", "seed": i} for i in range(8)])
        time.sleep(0.2)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{url}/v1/models/simplear:predict", json={"instances": [{"prompt": "gone", "seed": 9}]},
                          timeout=0.3)
        assert long.result().status_code == 200
    deadline = time.monotonic() + 10
    while metric(url, "simplear_serve_expired_images_total", '{stage="queued"}') < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(url, "simplear_serve_expired_images_total", '{stage="queued"}') == 1
    assert metric(url, "simplear_serve_errors_total", '{code="499",route="v1_predict"}') == 1
    assert sampler_calls(url) == 8
    assert metric(url, "simplear_serve_queue_depth") == 0


def test_sigterm_stops_the_server(servers: dict[str, ServerProcess]) -> None:
    """SIGTERM ends the server process cleanly and frees its port."""
    server = servers["slow"]
    assert server.stop() == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass
