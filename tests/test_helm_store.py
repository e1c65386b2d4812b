"""The object store: MinIO, its credentials Secret, the bucket Job and the NetworkPolicy in front of it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from helpers import NAMESPACE, chart_platform_config, find, objects, one, parse, pod_labels, render_values

from simplear.platform.manifests import inference_service


def env_of(container: dict) -> dict[str, dict]:
    """A container's environment by variable name."""
    return {variable["name"]: variable for variable in container.get("env", [])}


def secret_ref(variable: dict) -> tuple[str, str]:
    """(Secret name, key) a variable is read from."""
    ref = variable["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_generated_secret_holds_root_user_and_a_long_random_password() -> None:
    """The chart's Secret has the configured user and a 40-character random password, new on each fresh render."""
    first = one(objects("default"), "Secret", "simplear-store")
    again = one(parse(render_values({})), "Secret", "simplear-store")
    user = base64.b64decode(first["data"]["AWS_ACCESS_KEY_ID"]).decode()
    password = base64.b64decode(first["data"]["AWS_SECRET_ACCESS_KEY"]).decode()
    assert user == "simplear-admin"
    assert len(password) == 40 and password.isalnum()
    assert again["data"]["AWS_SECRET_ACCESS_KEY"] != first["data"]["AWS_SECRET_ACCESS_KEY"]


def test_generated_secret_and_volume_survive_uninstall_by_default() -> None:
    """Checkpoints and the credentials that open them are kept on uninstall unless asked otherwise."""
    docs = objects("default")
    for kind in ("Secret", "PersistentVolumeClaim"):
        assert one(docs, kind)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dropped = parse(render_values({"minio": {"persistence": {"keepOnUninstall": False}}}))
    assert "helm.sh/resource-policy" not in one(dropped, "PersistentVolumeClaim")["metadata"].get("annotations", {})


def test_generated_secret_carries_kserve_s3_annotations() -> None:
    """KServe's storage initializer learns the endpoint, scheme, TLS check and region from the Secret."""
    annotations = one(objects("default"), "Secret", "simplear-store")["metadata"]["annotations"]
    assert annotations["serving.kserve.io/s3-endpoint"] == f"simplear-minio.{NAMESPACE}.svc:9000"
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"
    assert annotations["serving.kserve.io/s3-verifyssl"] == "1"
    assert annotations["serving.kserve.io/s3-region"] == "us-east-1"


def test_minio_reads_its_root_credentials_from_the_secret() -> None:
    """MinIO's root user and password come from the store Secret, generated or existing."""
    for value_set, secret in (("default", "simplear-store"), ("minio-existing-secret", "team-minio-root")):
        (container,) = one(objects(value_set), "Deployment", "simplear-minio")["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        assert secret_ref(env["MINIO_ROOT_USER"]) == (secret, "AWS_ACCESS_KEY_ID")
        assert secret_ref(env["MINIO_ROOT_PASSWORD"]) == (secret, "AWS_SECRET_ACCESS_KEY")


def test_minio_keeps_its_data_on_the_claim_and_restarts_without_overlap() -> None:
    """Data lives on the PersistentVolumeClaim; Recreate keeps two pods off the ReadWriteOnce volume."""
    docs = objects("default")
    deployment = one(docs, "Deployment", "simplear-minio")
    claim = one(docs, "PersistentVolumeClaim", "simplear-minio")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_minio_health_routes_drive_its_probes() -> None:
    """Liveness and startup on /minio/health/live, readiness on /minio/health/ready."""
    (container,) = one(objects("default"), "Deployment", "simplear-minio")["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"


def test_bucket_job_creates_both_configured_buckets_after_install_and_upgrade() -> None:
    """A post-install/post-upgrade hook runs the bucket script for the data and checkpoint buckets."""
    job = one(objects("default"), "Job", "simplear-buckets")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "/scripts/create_buckets.py"]
    assert container["args"] == ["simplear-data", "simplear-checkpoints"]
    env = env_of(container)
    assert env["SIMPLEAR_S3_ENDPOINT"]["value"] == f"simplear-minio.{NAMESPACE}.svc:9000"
    assert secret_ref(env["AWS_SECRET_ACCESS_KEY"]) == ("simplear-store", "AWS_SECRET_ACCESS_KEY")


def test_external_store_uses_its_endpoint_and_secret_and_renders_no_minio() -> None:
    """minio.enabled=false: clients get the external endpoint over HTTPS and the existing Secret."""
    docs = objects("external-s3")
    assert not find(docs, "Deployment") and not find(docs, "Secret")
    (container,) = one(docs, "Pod", "simplear-test")["spec"]["containers"]
    env = env_of(container)
    assert env["SIMPLEAR_S3_ENDPOINT"]["value"] == "s3.eu-west-1.amazonaws.com"
    assert env["SIMPLEAR_S3_SECURE"]["value"] == "true"
    assert secret_ref(env["AWS_ACCESS_KEY_ID"]) == ("aws-s3-credentials", "AWS_ACCESS_KEY_ID")
    assert "MINIO_HEALTH_URL" not in env


def test_network_policy_admits_only_labelled_platform_pods_to_minio() -> None:
    """Ingress to MinIO's pods only from pods labelled simplear.io/store-client=true, on the S3 port."""
    docs = objects("default")
    policy = one(docs, "NetworkPolicy", "simplear-minio")
    minio_labels = one(docs, "Deployment", "simplear-minio")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= minio_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"simplear.io/store-client": "true"}}}]
    assert rule["ports"] == [{"port": "s3", "protocol": "TCP"}]


def test_every_store_client_of_the_chart_is_admitted() -> None:
    """The bucket Job, the test pod and a served model's predictor carry the label the policy admits; MinIO itself
    does not."""
    labels = pod_labels(objects("default"))
    clients = {where for where, pod in labels.items() if pod.get("simplear.io/store-client") == "true"}
    assert clients == {"Job/simplear-buckets", "Pod/simplear-test"}
    platform = chart_platform_config("default")
    predictor = inference_service(platform, platform.inference_service, "s3://ckpt/m")["spec"]["predictor"]
    assert predictor["labels"]["simplear.io/store-client"] == "true"


def test_extra_peers_can_be_admitted() -> None:
    """minio.networkPolicy.extraFrom adds peers, e.g. the namespace Kubeflow runs pipeline pods in."""
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}}
    docs = parse(render_values({"minio": {"networkPolicy": {"extraFrom": [peer]}}}))
    (rule,) = one(docs, "NetworkPolicy", "simplear-minio")["spec"]["ingress"]
    assert rule["from"][1:] == [peer]


def test_run_to_completion_pods_accept_no_connections() -> None:
    """Jobs and the test pod are selected by a policy with no ingress rule at all."""
    docs = objects("kfp")
    policy = one(docs, "NetworkPolicy", "simplear-deny-ingress")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in policy["spec"]
    selected = {where for where, pod in pod_labels(docs).items() if selector.items() <= pod.items()}
    assert selected == {"Job/simplear-buckets", "Job/simplear-register-pipelines", "Pod/simplear-test"}


def test_the_minio_pin_includes_the_2025_10_15_security_release_or_security_md_says_why() -> None:
    """MinIO's 2025-10-15 release fixes CVE-2025-62506: the pinned tag includes it, or SECURITY.md names the tag and
    explains."""
    tag = one(objects("default"), "Deployment", "simplear-minio")["spec"]["template"]["spec"]["containers"][0][
        "image"].rsplit(":", 1)[1]
    released = re.fullmatch(r"RELEASE\.(\d{4}-\d{2}-\d{2})T.*", tag).group(1)
    if released < "2025-10-15":
        security = (Path(__file__).resolve().parents[1] / "helm" / "simplear" / "SECURITY.md").read_text()
        section = security.split("## MinIO release", 1)[1].split("\n## ", 1)[0]
        assert tag in section and "RELEASE.2025-10-15T17-29-55Z" in section and "CVE-2025-62506" in section
