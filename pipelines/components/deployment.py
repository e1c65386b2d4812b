"""Deploy component: the model server on the new checkpoint, checked with one v1 predict request whose image is scored.

The backend's launcher serves the model (Launcher.deploy): on the cluster an InferenceService (model format simplear,
the platform's ServingRuntime) created or updated with the checkpoint's storageUri, ready once its pods serve that
checkpoint; locally `simplear serve` on 127.0.0.1 for as long as the check takes.
"""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from pipelines.components.base import on_base_image
from pipelines.components.stage_support import (
    STAGE_HELPERS,
    backend_store,
    progress,
    publish,
    record_step,
    stage_launcher,
)


def predict_once(url: str, model_name: str, prompt: dict, seed: int, cfg_scale: float, negative_prompt: str,
                 score_shapes: bool = True) -> dict:
    """One v1 predict request for a held-out prompt; its latency, the image's size and (score_shapes) shapes score."""
    import base64
    import io
    import json
    import time
    import urllib.request

    from PIL import Image

    from simplear.data.shapes import score_image

    body = {"instances": [{"prompt": prompt["prompt"], "seed": seed, "cfg_scale": cfg_scale,
                           "negative_prompt": negative_prompt}]}
    request = urllib.request.Request(f"{url}/v1/models/{model_name}:predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as answer:
        (prediction,) = json.loads(answer.read())["predictions"]
    latency = time.monotonic() - started
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image_b64"]))).convert("RGB")
    if image.size != (prediction["resolution"], prediction["resolution"]):
        raise ValueError(f"served image is {image.size}, not the {prediction['resolution']} px it reports")
    answer = {"prompt": prompt["prompt"], "seed": prediction["seed"], "latency_s": latency, "width": image.width,
              "height": image.height}
    if score_shapes:
        score = score_image(image, prompt)
        answer.update(correct=bool(score.correct), reason=score.reason)
    return answer


@on_base_image(*STAGE_HELPERS, predict_once)
def deploy(backend: str, runs_dir: str, root: str, run_id: str, model_name: str, inference_service: str, seed: int,
           cfg_scale: float, negative_prompt: str, timeout_minutes: int, model: Input[Model],
           prompts: Input[Dataset], served: Output[Artifact], score_shapes: bool = True) -> None:
    """Serve the model through the backend's launcher under inference_service, else model_name, else the backend's
    default (local: simplear; kubernetes: the platform's InferenceService, labelled with this run) and check one
    image once the new model serves."""
    import json
    import time

    from simplear.platform.manifests.labels import STAGE_LABEL, pipeline_run_labels

    uri = model.metadata["uri"]
    store = backend_store(backend)
    prompt = json.loads(store.read(prompts.metadata["eval_prompts"]).decode().splitlines()[0])
    started = time.monotonic()
    launcher = stage_launcher(backend, runs_dir)
    with launcher.deploy(inference_service or model_name, uri, timeout=timeout_minutes * 60,
                         labels={**pipeline_run_labels(run_id), STAGE_LABEL: "serve"}) as deployment:
        ready = time.monotonic() - started
        progress(f"serve: {deployment.name} serves {uri} at {deployment.url} after {ready:.0f} s")
        check = predict_once(deployment.url, deployment.name, prompt, seed, cfg_scale, negative_prompt,
                             score_shapes)
    verdict = "" if "correct" not in check else f" ({'correct' if check['correct'] else check['reason']})"
    progress(f"serve: v1 predict answered a {check['width']}x{check['height']} image in {check['latency_s']:.1f} s "
             f"for {check['prompt']!r}{verdict}")
    result = {"backend": backend, "url": deployment.url, "model": uri, "ready_s": ready, **check}
    publish(served, uri, result)
    record_step(store, root, "serve", {"stage": "serve", "seconds": time.monotonic() - started, "served": result})
