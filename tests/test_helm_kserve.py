"""The InferenceService: custom predictor on the serve image, model from MinIO, probes, replicas and S3 wiring."""

from __future__ import annotations

from test_helm_render import find, objects, one, parse, render_values


def predictor(value_set: str = "default", values: dict | None = None) -> dict:
    """spec.predictor of the InferenceService a value set (or explicit values) renders."""
    docs = objects(value_set) if values is None else parse(render_values(values))
    return one(docs, "InferenceService")["spec"]["predictor"]


def test_predictor_runs_simplear_serve_on_the_serve_image() -> None:
    """One kserve-container running `simplear serve` on port 8080 with the model under /mnt/models."""
    (container,) = predictor()["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "ghcr.io/simplear/simplear-serve:0.1.0"
    command = container["command"] + container["args"]
    assert command == [
        "simplear", "serve", "--model-name", "simplear", "--model-dir", "/mnt/models",
        "--host", "$(POD_IP)", "--host", "127.0.0.1", "--http-port", "8080", "--deadline-s", "300",
    ]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]


def test_server_binds_the_pod_ip_from_the_downward_api_and_loopback() -> None:
    """POD_IP comes from status.podIP; the server binds it and 127.0.0.1, never 0.0.0.0."""
    (container,) = predictor()["containers"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    hosts = [value for flag, value in zip(container["args"], container["args"][1:], strict=False) if flag == "--host"]
    assert hosts == ["$(POD_IP)", "127.0.0.1"]
    assert "0.0.0.0" not in container["args"]


def test_server_deadline_follows_the_request_timeout() -> None:
    """The server cancels a request at the same timeout the InferenceService gives it."""
    spec = predictor(values={"kserve": {"timeoutSeconds": 120}})
    (container,) = spec["containers"]
    assert container["args"][container["args"].index("--deadline-s") + 1] == str(spec["timeout"]) == "120"


def test_storage_initializer_downloads_the_checkpoint_from_the_checkpoint_bucket() -> None:
    """STORAGE_URI is s3://<checkpoint bucket>/<model path>, following the values."""
    (container,) = predictor()["containers"]
    assert {"name": "STORAGE_URI", "value": "s3://simplear-checkpoints/models/simplear/latest"} in container["env"]
    values = {"store": {"checkpointBucket": "ckpt"}, "kserve": {"modelPath": "runs/42/grpo/step-900"}}
    (moved,) = predictor(values=values)["containers"]
    assert {"name": "STORAGE_URI", "value": "s3://ckpt/runs/42/grpo/step-900"} in moved["env"]


def test_probes_use_kserve_health_routes() -> None:
    """Readiness on /v2/health/ready, liveness and startup on /v2/health/live, all on 8080."""
    (container,) = predictor()["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] == 600


def test_knative_mode_waits_out_the_load_without_a_startup_probe() -> None:
    """In Knative mode the liveness probe starts after startupSeconds instead."""
    (container,) = predictor(values={"kserve": {"deploymentMode": "Knative", "startupSeconds": 900}})["containers"]
    assert "startupProbe" not in container
    assert container["livenessProbe"]["initialDelaySeconds"] == 900


def test_replicas_mode_and_timeout_follow_the_values() -> None:
    """minReplicas, maxReplicas, the request timeout and the deployment-mode annotation come from values."""
    values = {"kserve": {"minReplicas": 0, "maxReplicas": 4, "timeoutSeconds": 120, "deploymentMode": "Knative"}}
    docs = parse(render_values(values))
    isvc = one(docs, "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    spec = isvc["spec"]["predictor"]
    assert (spec["minReplicas"], spec["maxReplicas"], spec["timeout"]) == (0, 4, 120)


def test_predictor_reaches_the_store_secret_through_its_own_service_account() -> None:
    """The predictor's ServiceAccount lists the store Secret (KServe's link) and mounts no API token."""
    docs = objects("default")
    spec = one(docs, "InferenceService")["spec"]["predictor"]
    account = one(docs, "ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["name"] == "simplear-serve"
    assert account["secrets"] == [{"name": "simplear-store"}]
    assert account["automountServiceAccountToken"] is False


def test_existing_secret_is_the_one_kserve_reads() -> None:
    """With store.existingSecret, the predictor's account lists that Secret and the chart makes none."""
    docs = objects("external-s3")
    assert one(docs, "ServiceAccount", "simplear-serve")["secrets"] == [{"name": "aws-s3-credentials"}]
    assert not find(docs, "Secret")


def test_kserve_disabled_renders_no_serving_objects_and_no_endpoint_check() -> None:
    """kserve.enabled=false: no InferenceService, no serve account, and `helm test` skips the endpoint."""
    docs = objects("kserve-disabled")
    assert not find(docs, "InferenceService")
    assert not find(docs, "ServiceAccount", "simplear-serve")
    (container,) = one(docs, "Pod", "simplear-test")["spec"]["containers"]
    assert "MODEL_READY_URL" not in {variable["name"] for variable in container["env"]}


def test_helm_test_checks_minio_and_the_predictor() -> None:
    """The test pod checks MinIO's live route, both buckets and the predictor's readiness route."""
    pod = one(objects("default"), "Pod", "simplear-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["MINIO_HEALTH_URL"] == "http://simplear-minio.ml-platform.svc:9000/minio/health/live"
    assert env["MODEL_READY_URL"] == "http://simplear-predictor.ml-platform.svc/v2/health/ready"
    assert container["args"] == ["simplear-data", "simplear-checkpoints"]
