"""The scripts the chart's jobs run, executed for real: bucket setup and `helm test` against an S3 server."""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import CHART
from minio import Minio

from simplear.s3_server import EmbeddedS3
from simplear.store import Store, StoreError

SCRIPTS = CHART / "files" / "scripts"


def run_script(name: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run files/scripts/<name> as the Job would, with env added to this environment."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_script(name: str) -> ModuleType:
    """Import files/scripts/<name> as a module."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), SCRIPTS / name)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh_buckets() -> list[str]:
    """Two bucket names no other test uses."""
    suffix = secrets.token_hex(4)
    return [f"chart-data-{suffix}", f"chart-ckpt-{suffix}"]


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2/health/ready"


def test_bucket_script_creates_missing_buckets_and_is_safe_to_rerun(s3_server: EmbeddedS3) -> None:
    """First run creates both buckets; an upgrade's rerun finds them and succeeds."""
    buckets = fresh_buckets()
    first = run_script("create_buckets.py", buckets, s3_server.env())
    again = run_script("create_buckets.py", buckets, s3_server.env())
    client = Minio(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, secure=False)
    assert first.returncode == 0, first.stderr
    assert all(client.bucket_exists(bucket) for bucket in buckets)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("exists") == 2


def test_bucket_script_fails_on_wrong_credentials(s3_server: EmbeddedS3) -> None:
    """A wrong secret key stops the Job with the store's refusal, not a silent success."""
    result = run_script("create_buckets.py", fresh_buckets(), {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert result.returncode != 0
    assert "S3Error" in result.stderr


def test_smoke_test_passes_when_the_buckets_exist(s3_server: EmbeddedS3) -> None:
    """`helm test` passes on a store holding both buckets."""
    buckets = fresh_buckets()
    for bucket in buckets:
        s3_server.create_bucket(bucket)
    result = run_script("smoke_test.py", buckets, s3_server.env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS buckets" in result.stdout


def test_smoke_test_fails_on_a_missing_bucket_or_an_unready_endpoint(s3_server: EmbeddedS3) -> None:
    """A missing bucket, or a model endpoint that does not answer, fails `helm test`."""
    buckets = fresh_buckets()
    s3_server.create_bucket(buckets[0])
    missing = run_script("smoke_test.py", buckets, s3_server.env())
    assert missing.returncode == 1 and f"missing buckets: {buckets[1]}" in missing.stdout
    s3_server.create_bucket(buckets[1])
    unready = run_script("smoke_test.py", buckets, {**s3_server.env(), "MODEL_READY_URL": closed_port_url()})
    assert unready.returncode == 1 and "FAIL model ready" in unready.stdout


SECURE_VALUES = {"true": True, "TRUE": True, "1": True, "yes": True, " on ": True,
                 "false": False, "0": False, "No": False, "off": False, "": False}


def test_bucket_job_reads_the_s3_settings_as_the_store_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """One parser: each SIMPLEAR_S3_SECURE value, with a host:port or an https:// endpoint, gives the bucket Job's
    client the TLS setting that the Store's client gets."""
    store_client = load_script("create_buckets.py").store_client
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for endpoint in ("127.0.0.1:9000", "https://127.0.0.1:9000"):
        monkeypatch.setenv("SIMPLEAR_S3_ENDPOINT", endpoint)
        for value, secure in SECURE_VALUES.items():
            monkeypatch.setenv("SIMPLEAR_S3_SECURE", value)
            store_https = Store()._s3.client("s3://b/k")._base_url.is_https
            assert store_https == (secure or endpoint.startswith("https://")), (endpoint, value)
            assert store_client("b")._base_url.is_https == store_https, (endpoint, value)


@pytest.mark.parametrize("script", ["create_buckets.py", "smoke_test.py"])
def test_chart_scripts_refuse_a_secure_flag_that_is_no_boolean(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIMPLEAR_S3_SECURE=treu stops the Job with the Store's own error naming the variable, not a silent http."""
    monkeypatch.setenv("SIMPLEAR_S3_SECURE", "treu")
    with pytest.raises(StoreError, match="SIMPLEAR_S3_SECURE takes true or false") as store_error:
        Store()
    result = run_script(script, ["b"], {"SIMPLEAR_S3_ENDPOINT": "127.0.0.1:9", "SIMPLEAR_S3_SECURE": "treu"})
    assert result.returncode != 0 and str(store_error.value) in result.stderr


def test_pipeline_versions_are_named_by_chart_version_and_content(tmp_path: Path) -> None:
    """Same content, same version name (a rerun registers nothing); new content, new version."""
    register = load_script("register_pipelines.py")
    package = tmp_path / "train.yaml"
    package.write_text("pipelineInfo: {name: train}\n")
    first = register.version_name(package, "0.1.0")
    assert first == register.version_name(package, "0.1.0")
    assert first.startswith("0.1.0-") and len(first) == len("0.1.0-") + 12
    package.write_text("pipelineInfo: {name: train, v: 2}\n")
    assert register.version_name(package, "0.1.0") != first


def test_registration_refuses_an_empty_pipeline_folder(tmp_path: Path) -> None:
    """No compiled pipeline: the Job fails and says where it looked."""
    env = {"KFP_ENDPOINT": "http://127.0.0.1:9", "CHART_VERSION": "0.1.0"}
    result = run_script("register_pipelines.py", [str(tmp_path)], env)
    assert result.returncode == 1
    assert f"no compiled pipelines under {tmp_path}" in result.stderr
