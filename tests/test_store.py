"""Store behaviour against local directories and a real S3 server (SeaweedFS): data, artifacts, failures."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from minio import Minio
from pydantic import SecretStr

from simplear.config import StoreSettings
from simplear.s3_server import EmbeddedS3
from simplear.store import (
    MANIFEST,
    MIN_PART_SIZE,
    ArtifactNotFound,
    CorruptArtifact,
    ObjectNotFound,
    Store,
    StoreError,
    is_s3,
    join,
)


@pytest.fixture(params=["local", "s3"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, str]:
    """A Store and an empty root URI: a local directory, or a fresh bucket on the real S3 server."""
    if request.param == "local":
        return Store(StoreSettings()), str(tmp_path / "store")
    return request.getfixturevalue("s3_store")


def s3_client(server: EmbeddedS3) -> Minio:
    """A plain minio client on the test server, to look at what the Store left there."""
    return Minio(server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False)


def bucket_of(uri: str) -> str:
    """The bucket name of an s3:// URI."""
    return uri[len("s3://") :].split("/")[0]


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write files (relative path -> content) under root."""
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FlakyProxy:
    """An HTTP proxy on 127.0.0.1 that answers the first `failures` requests with S3 503s, then forwards them."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures = upstream, failures
        self.requests = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """A request handler class bound to this proxy."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            """Fails or forwards one request at a time."""

            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                """Answer with a 503 while failures remain, else forward upstream and relay the answer."""
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.requests += 1
                    fail = proxy.requests <= proxy.failures
                if fail:
                    error = b"<Error><Code>ServiceUnavailable</Code><Message>Please retry.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(error)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                upstream.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                response = upstream.getresponse()
                content = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

            def log_message(self, *args: object) -> None:
                """Keep test output quiet."""

        return Handler


# ---- data round trips (local and S3)


def test_read_write_exists_list_delete_round_trip(store_root: tuple[Store, str]) -> None:
    store, root = store_root
    a, b, c = join(root, "d", "a.bin"), join(root, "d", "sub", "b.txt"), join(root, "c.txt")
    store.write(a, b"\x00\x01payload")
    store.write(b, b"hello")
    store.write(c, b"")
    assert store.read(a) == b"\x00\x01payload"
    assert store.read(c) == b""
    assert store.exists(a) and store.exists(b)
    assert not store.exists(join(root, "d")), "a prefix is not an object"
    assert not store.exists(join(root, "missing"))
    assert store.list(root) == sorted([a, b, c])
    assert store.list(join(root, "d"), recursive=False) == [a]
    assert store.list(join(root, "nothing-here")) == []
    store.write(a, b"replaced")
    assert store.read(a) == b"replaced"
    store.delete(a)
    store.delete(a)
    assert not store.exists(a)
    assert store.list(root) == sorted([b, c])
    with pytest.raises(ObjectNotFound, match="missing"):
        store.read(join(root, "missing"))


def test_streams_and_files_round_trip(store_root: tuple[Store, str], tmp_path: Path) -> None:
    store, root = store_root
    chunks = [os.urandom(100_000) for _ in range(7)]
    uri = join(root, "stream.bin")
    with store.open(uri, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    with store.open(uri, "rb") as f:
        assert f.read(10) == chunks[0][:10]
        assert f.read() == b"".join(chunks)[10:]
    source = make_tree(tmp_path / "src", {"file.bin": os.urandom(300_000)}) / "file.bin"
    store.upload_file(source, join(root, "copied.bin"))
    downloaded = store.download_file(join(root, "copied.bin"), tmp_path / "out" / "file.bin")
    assert downloaded == tmp_path / "out" / "file.bin"
    assert downloaded.read_bytes() == source.read_bytes()
    assert os.listdir(tmp_path / "out") == ["file.bin"], "no temp file left beside the download"


def test_pending_write_is_invisible_until_close(store_root: tuple[Store, str]) -> None:
    store, root = store_root
    store = Store(store.settings, part_size=MIN_PART_SIZE)
    uri = join(root, "object.bin")
    store.write(uri, b"old")
    new = os.urandom(MIN_PART_SIZE + 1000)
    writer = store.open(uri, "wb")
    writer.write(new)
    assert store.read(uri) == b"old", "a half-written object must never replace the old one"
    assert store.list(root) == [uri], "in-progress temp files are not listed"
    writer.close()
    assert store.read(uri) == new


CRASHING_WRITER = (
    "import os, sys; from simplear.store import Store; "
    "f = Store().open(sys.argv[1], 'wb'); f.write(b'x' * 100_000); f.flush(); os._exit(3)"
)


def test_crash_mid_write_leaves_no_file_at_the_final_path(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    assert subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(target)], timeout=60).returncode == 3
    assert not target.exists()
    assert len(os.listdir(tmp_path)) == 1, "only the dead writer's hidden temp file remains"
    assert Store(StoreSettings()).list(str(tmp_path)) == [], "and it is not listed"


def test_the_next_writer_removes_dead_writers_temp_files_only(tmp_path: Path) -> None:
    """Temps of crashed writers of a target go when it is written again; a live writer's and other targets' stay."""

    def crash(name: str) -> set[str]:
        assert subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(tmp_path / name)], timeout=60).returncode == 3
        return {p.name for p in tmp_path.iterdir()}

    (first,) = crash("out.bin")
    (second,) = crash("out.bin")
    assert second != first, "the restarted writer removed its dead predecessor's temp"
    (other,) = crash("other.bin") - {second}
    assert other.startswith(".other.bin.") and other.endswith(".simplear-tmp")
    store = Store(StoreSettings())
    live = store.open(str(tmp_path / "out.bin"), "wb")
    live.write(b"in progress")
    (pending,) = {p.name for p in tmp_path.iterdir()} - {other}
    assert pending != second
    with store.open(str(tmp_path / "out.bin"), "wb") as again:
        again.write(b"final")
    assert {p.name for p in tmp_path.iterdir()} == {other, pending, "out.bin"}, "a live writer's temp is kept"
    live.abort()
    assert (tmp_path / "out.bin").read_bytes() == b"final"
    assert {p.name for p in tmp_path.iterdir()} == {other, "out.bin"}


def test_concurrent_writers_of_one_target_never_remove_each_others_temp(tmp_path: Path) -> None:
    """Writers starting together (two ranks writing the same settings file): each commits, nothing is left over."""
    store, target = Store(StoreSettings()), str(tmp_path / "settings.json")
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        barrier.wait()
        for round_ in range(25):
            try:
                store.write(target, f"{worker} {round_}".encode())
            except StoreError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert os.listdir(tmp_path) == ["settings.json"]


def test_a_download_removes_staging_folders_of_dead_downloads(
    store_root: tuple[Store, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, root = store_root
    store.put_artifact(make_tree(tmp_path / "src", {"w.bin": b"weights" * 1000}), join(root, "model"))
    crash = (
        "import os, sys; from simplear.store import Store\n"
        "Store._download_checked = lambda *args: os._exit(3)\n"
        "Store().get_artifact(sys.argv[1], sys.argv[2])"
    )
    env = {**os.environ, **(request.getfixturevalue("s3_server").env() if is_s3(root) else {})}
    dead = subprocess.run([sys.executable, "-c", crash, join(root, "model"), str(tmp_path / "dl" / "model")],
                          env=env, timeout=120)
    assert dead.returncode == 3
    (staging,) = os.listdir(tmp_path / "dl")
    assert staging.startswith(".model.") and staging.endswith(".simplear-partial")
    store.get_artifact(join(root, "model"), tmp_path / "dl" / "model")
    assert os.listdir(tmp_path / "dl") == ["model"], "the dead download's staging folder is gone"


def test_exception_inside_open_for_writing_leaves_nothing(
    store_root: tuple[Store, str], request: pytest.FixtureRequest
) -> None:
    store, root = store_root
    store = Store(store.settings, part_size=MIN_PART_SIZE)
    uri = join(root, "never.bin")
    with pytest.raises(RuntimeError, match="boom"), store.open(uri, "wb") as f:
        f.write(os.urandom(MIN_PART_SIZE + 10))
        raise RuntimeError("boom")
    assert not store.exists(uri)
    assert store.list(root) == []
    if is_s3(root):
        uploads = s3_client(request.getfixturevalue("s3_server"))._list_multipart_uploads(bucket_of(root))
        assert uploads.uploads == [], "the multipart upload was aborted"
    else:
        assert not Path(root).exists() or os.listdir(root) == []


def test_large_object_streams_as_multipart_upload(s3_store: tuple[Store, str], s3_server: EmbeddedS3) -> None:
    store, root = s3_store
    store = Store(store.settings, part_size=5 * 1024 * 1024)
    data = os.urandom(20_000_000)
    uri = join(root, "big", "blob.bin")
    with store.open(uri, "wb") as f:
        for start in range(0, len(data), 1_000_000):
            f.write(data[start : start + 1_000_000])
    stat = s3_client(s3_server).stat_object(bucket_of(root), "big/blob.bin")
    assert stat.size == len(data)
    assert stat.etag.endswith("-4"), f"expected a 4-part multipart ETag, got {stat.etag}"
    with store.open(uri, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    assert store.read(uri) == data


# ---- artifacts (local and S3)


def test_artifact_round_trip(store_root: tuple[Store, str], tmp_path: Path) -> None:
    store, root = store_root
    files = {"config.json": b'{"a": 1}', "shards/000.bin": os.urandom(50_000), "shards/001.bin": b""}
    source = make_tree(tmp_path / "model", files)
    uri = join(root, "runs", "model")
    manifest = store.put_artifact(source, uri)
    assert manifest == {
        "format": "simplear-artifact/1",
        "files": [
            {"path": rel, "size": len(files[rel]), "sha256": hashlib.sha256(files[rel]).hexdigest()}
            for rel in sorted(files)
        ],
    }
    assert store.artifact_exists(uri)
    assert store.read_manifest(uri) == manifest
    assert store.list_artifacts(join(root, "runs")) == [uri]
    destination = tmp_path / "downloaded" / "model"
    assert store.get_artifact(uri, destination) == manifest
    for rel, content in files.items():
        assert (destination / rel).read_bytes() == content
    assert json.loads((destination / MANIFEST).read_text()) == manifest
    assert os.listdir(destination.parent) == ["model"], "no staging directory left behind"
    assert store.put_artifact(destination, join(root, "runs", "again")) == manifest, "a downloaded artifact re-uploads"


def test_interrupted_artifact_is_invisible(store_root: tuple[Store, str], tmp_path: Path) -> None:
    store, root = store_root
    complete = join(root, "arts", "complete")
    store.put_artifact(make_tree(tmp_path / "ok", {"w.bin": b"weights"}), complete)
    broken = make_tree(tmp_path / "broken", {"a.bin": b"first", "b.bin": b"second"})
    (broken / "z.bin").symlink_to(tmp_path / "vanished")
    for uri in (join(root, "arts", "partial"), complete):
        with pytest.raises(StoreError, match="z.bin"):
            store.put_artifact(broken, uri)
        assert store.exists(join(uri, "a.bin")), "the upload really got under way before it failed"
        assert not store.artifact_exists(uri)
        with pytest.raises(ArtifactNotFound, match="manifest.json"):
            store.get_artifact(uri, tmp_path / "never")
    assert store.list_artifacts(join(root, "arts")) == []
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("damage", ["same-size", "truncated"])
def test_changed_object_fails_hash_check_and_leaves_no_directory(
    store_root: tuple[Store, str], tmp_path: Path, damage: str
) -> None:
    store, root = store_root
    uri = join(root, "art")
    store.put_artifact(make_tree(tmp_path / "src", {"a.bin": b"A" * 1000, "b.bin": b"B" * 1000}), uri)
    store.write(join(uri, "b.bin"), b"B" * 999 + b"X" if damage == "same-size" else b"B" * 10)
    (tmp_path / "dest").mkdir()
    with pytest.raises(CorruptArtifact, match=r"b\.bin.*(sha256|bytes)"):
        store.get_artifact(uri, tmp_path / "dest" / "art")
    assert os.listdir(tmp_path / "dest") == [], "neither the destination nor a staging directory is left"


@pytest.mark.parametrize("evil", ["../escaped.txt", "/etc/passwd", "a/../../escaped.txt", "a\\..\\x", "a//b", ""])
def test_manifest_paths_that_escape_are_refused(store_root: tuple[Store, str], tmp_path: Path, evil: str) -> None:
    store, root = store_root
    uri = join(root, "evil")
    store.write(join(uri, "ok.bin"), b"ok")
    entry = {"path": evil, "size": 2, "sha256": hashlib.sha256(b"ok").hexdigest()}
    ok = {"path": "ok.bin", "size": 2, "sha256": entry["sha256"]}
    store.write(join(uri, MANIFEST), json.dumps({"format": "simplear-artifact/1", "files": [ok, entry]}).encode())
    (tmp_path / "dest").mkdir()
    with pytest.raises(CorruptArtifact, match=r"path .*; refusing it"):
        store.get_artifact(uri, tmp_path / "dest" / "evil")
    assert os.listdir(tmp_path / "dest") == []
    assert not (tmp_path / "escaped.txt").exists()


def test_get_artifact_refuses_a_non_empty_destination(store_root: tuple[Store, str], tmp_path: Path) -> None:
    store, root = store_root
    uri = join(root, "art")
    store.put_artifact(make_tree(tmp_path / "src", {"a.bin": b"new"}), uri)
    occupied = make_tree(tmp_path / "occupied", {"mine.txt": b"keep me"})
    with pytest.raises(StoreError, match="not an empty directory"):
        store.get_artifact(uri, occupied)
    assert os.listdir(occupied) == ["mine.txt"] and (occupied / "mine.txt").read_bytes() == b"keep me"


def test_local_dir_of_a_local_path_is_the_path_itself(tmp_path: Path) -> None:
    store = Store(StoreSettings())
    source = make_tree(tmp_path / "released", {"config.json": b"{}", "model.safetensors": b"w"})
    for uri in (str(source), f"file://{source}", source):
        with store.local_dir(uri) as path:
            assert path == source and (path / "model.safetensors").read_bytes() == b"w"
    assert sorted(os.listdir(source)) == ["config.json", "model.safetensors"], "a local artifact is never removed"


def test_local_dir_of_s3_is_a_verified_copy_removed_afterwards(s3_store: tuple[Store, str], tmp_path: Path) -> None:
    store, bucket = s3_store
    files = {"config.json": b'{"a": 1}', "shards/000.bin": os.urandom(20_000)}
    uri = join(bucket, "models", "m")
    manifest = store.put_artifact(make_tree(tmp_path / "src", files), uri)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with store.local_dir(uri, scratch) as path:
        assert path.is_relative_to(scratch)
        assert {rel: (path / rel).read_bytes() for rel in files} == files
        assert json.loads((path / MANIFEST).read_text()) == manifest
    assert not path.exists() and os.listdir(scratch) == [], "the downloaded copy is gone once the block exits"
    with pytest.raises(RuntimeError, match="caller failed"), store.local_dir(uri, scratch) as path:
        assert path.is_dir()
        raise RuntimeError("caller failed")
    assert os.listdir(scratch) == [], "the copy is removed when the caller fails too"


def test_local_dir_refuses_an_incomplete_or_corrupt_s3_artifact(s3_store: tuple[Store, str], tmp_path: Path) -> None:
    store, bucket = s3_store
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    partial = join(bucket, "partial")
    store.write(join(partial, "config.json"), b"{}")
    with pytest.raises(ArtifactNotFound, match="manifest.json"), store.local_dir(partial, scratch):
        pytest.fail("an artifact without a manifest must not be handed out")
    corrupt = join(bucket, "corrupt")
    store.put_artifact(make_tree(tmp_path / "src", {"w.bin": b"weights"}), corrupt)
    store.write(join(corrupt, "w.bin"), b"weightz")
    with pytest.raises(CorruptArtifact, match="sha256"), store.local_dir(corrupt, scratch):
        pytest.fail("a corrupt artifact must not be handed out")
    assert os.listdir(scratch) == [], "a refused download leaves nothing behind"


# ---- URIs


@pytest.mark.parametrize("key", ["../x", "a/../b", "./x", "/x", "a//b", "a\\b", "a/.."])
def test_unsafe_s3_keys_are_refused(s3_store: tuple[Store, str], key: str) -> None:
    store, root = s3_store
    uri = f"{root}/{key}"
    for action in (lambda: store.write(uri, b"x"), lambda: store.read(uri), lambda: store.exists(uri)):
        with pytest.raises(StoreError, match="refusing"):
            action()
    assert store.list(root) == []


def test_s3_uri_without_bucket_or_key_is_refused(s3_store: tuple[Store, str]) -> None:
    store, root = s3_store
    with pytest.raises(StoreError, match="needs a bucket"):
        store.read("s3:///key")
    with pytest.raises(StoreError, match="not an object"):
        store.write(root, b"x")


def test_local_uris_are_resolved_and_file_uris_must_be_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(StoreSettings())
    monkeypatch.chdir(tmp_path)
    store.write("rel/dir/x.bin", b"relative")
    assert (tmp_path / "rel" / "dir" / "x.bin").read_bytes() == b"relative"
    assert store.list("rel") == [str(tmp_path / "rel" / "dir" / "x.bin")]
    assert store.read(f"file://{tmp_path}/rel/dir/x.bin") == b"relative"
    assert store.list(f"file://{tmp_path}/rel/") == [f"file://{tmp_path}/rel/dir/x.bin"]
    assert store.read("rel/../rel/dir/x.bin") == b"relative"
    with pytest.raises(StoreError, match="must be absolute"):
        store.write("file://rel/x.bin", b"x")
    with pytest.raises(StoreError, match="unsupported URI"):
        store.read("gs://bucket/x")


def test_join_and_is_s3() -> None:
    assert join("s3://b/x", "y") == "s3://b/x/y"
    assert join("s3://b/x/", "/y/", "z") == "s3://b/x/y/z"
    assert join("s3://b", "k") == "s3://b/k"
    assert join("/data/run", "ckpt", "manifest.json") == "/data/run/ckpt/manifest.json"
    assert join("/", "x") == "/x"
    assert join("file:///", "x") == "file:///x"
    assert join("rel", "x") == "rel/x"
    assert is_s3("s3://b/k") and not is_s3("/s3/k") and not is_s3("file:///s3://x")


# ---- S3 configuration and failures


def test_missing_s3_settings_name_the_environment_variables(tmp_path: Path) -> None:
    store = Store(StoreSettings())
    store.write(str(tmp_path / "x"), b"local works without S3 settings")
    with pytest.raises(StoreError, match="SIMPLEAR_S3_ENDPOINT.*AWS_ACCESS_KEY_ID.*AWS_SECRET_ACCESS_KEY"):
        store.read("s3://bucket/key")
    half = Store(StoreSettings(endpoint="127.0.0.1:9000"))
    with pytest.raises(StoreError, match="127.0.0.1:9000.*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        half.write("s3://bucket/key", b"x")


def test_settings_come_from_the_environment(s3_store: tuple[Store, str], s3_server: EmbeddedS3) -> None:
    _, root = s3_store
    store = Store(StoreSettings.from_env(s3_server.env()))
    store.write(join(root, "k"), b"via env")
    assert store.read(join(root, "k")) == b"via env"


def test_endpoint_scheme_overrides_secure(s3_store: tuple[Store, str], s3_server: EmbeddedS3) -> None:
    _, root = s3_store
    settings = s3_server.settings()
    plain = Store(settings.model_copy(update={"endpoint": f"http://{s3_server.endpoint}", "secure": True}))
    plain.write(join(root, "k"), b"plain http")
    assert plain.read(join(root, "k")) == b"plain http"
    tls = Store(settings.model_copy(update={"endpoint": f"https://{s3_server.endpoint}"}))
    with pytest.raises(StoreError, match="TLS.*SIMPLEAR_S3_SECURE"):
        tls.read(join(root, "k"))


@pytest.mark.parametrize("wrong", ["secret", "access-key"])
def test_wrong_credentials_are_refused_clearly(s3_store: tuple[Store, str], s3_server: EmbeddedS3, wrong: str) -> None:
    _, root = s3_store
    bad_secret = "not-the-secret-" + "x" * 20
    access_key = s3_server.access_key if wrong == "secret" else "nobody-" + s3_server.access_key
    settings = StoreSettings(endpoint=s3_server.endpoint, access_key=access_key, secret_key=SecretStr(bad_secret))
    uri = join(root, "k")
    for action in (lambda: Store(settings).write(uri, b"x"), lambda: Store(settings).exists(uri)):
        with pytest.raises(StoreError) as caught:
            action()
        message = str(caught.value)
        assert "access denied" in message and s3_server.endpoint in message and uri in message
        assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
        assert bad_secret not in message and s3_server.secret_key not in message


def test_missing_bucket_is_named(s3_server: EmbeddedS3) -> None:
    store = Store(s3_server.settings())
    uri = "s3://simplear-no-such-bucket/data/x.bin"
    for action in (lambda: store.write(uri, b"x"), lambda: store.read(uri), lambda: store.list(uri)):
        with pytest.raises(StoreError) as caught:
            action()
        message = str(caught.value)
        assert "'simplear-no-such-bucket' does not exist" in message
        assert uri in message and s3_server.endpoint in message
    assert not s3_client(s3_server).bucket_exists("simplear-no-such-bucket"), "writing did not create the bucket"


def test_unreachable_endpoint_ends_in_one_clear_error_after_the_retry_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = f"127.0.0.1:{closed_port()}"
    settings = StoreSettings(endpoint=endpoint, access_key="k", secret_key=SecretStr("s"), retry_seconds=1.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "simplear.store"), pytest.raises(StoreError) as caught:
        Store(settings).read("s3://bucket/key")
    assert 1.4 <= time.monotonic() - started < 10, "backoff 0.2 + 0.4 + 0.8 s, the next 1.6 s would pass 1.5 s"
    assert re.fullmatch(
        rf"cannot reach S3 endpoint {endpoint} for s3://bucket/key \(after 4 attempts in 1\.\d s\): connection refused",
        str(caught.value),
    ), str(caught.value)
    retries = [record.getMessage() for record in caplog.records]
    assert len(retries) == 3, "each retry is logged once"
    assert all("connection refused" in line and "SIMPLEAR_S3_RETRY_SECONDS" in line for line in retries)
    assert [re.search(r"retry (\d) in", line)[1] for line in retries] == ["1", "2", "3"]


def test_retry_budget_comes_from_the_environment() -> None:
    assert StoreSettings.from_env({}).retry_seconds == 300.0
    assert StoreSettings.from_env({"SIMPLEAR_S3_RETRY_SECONDS": "2.5"}).retry_seconds == 2.5
    with pytest.raises(ValueError, match="retry_seconds"):
        StoreSettings.from_env({"SIMPLEAR_S3_RETRY_SECONDS": "-1"})
    done = subprocess.run(
        [sys.executable, "-m", "simplear.cli", "shapes", "--out", "s3://bucket/x", "--n", "1"],
        env={**os.environ, "SIMPLEAR_S3_RETRY_SECONDS": "soon"}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "SIMPLEAR_S3_RETRY_SECONDS takes a number of seconds" in done.stderr


def test_an_s3_outage_shorter_than_the_budget_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    """SeaweedFS killed and restarted 3 s later: a read made during the outage waits for it (default budget)."""
    with EmbeddedS3() as server:
        server.create_bucket("outage")
        store = Store(server.settings(), backoff_s=0.1)
        store.write("s3://outage/k", b"before the outage")
        server.kill()
        restarter = threading.Timer(3.0, server.restart)
        started = time.monotonic()
        restarter.start()
        try:
            with caplog.at_level(logging.WARNING, "simplear.store"):
                assert store.read("s3://outage/k") == b"before the outage"
        finally:
            restarter.join()
        assert time.monotonic() - started >= 3.0
        assert store.settings.retry_seconds >= 120, "the default budget is a few minutes"
        assert len(caplog.records) >= 3 and all("retry" in record.getMessage() for record in caplog.records)
        store.write("s3://outage/after", b"and after it")
        server.kill()
        short = Store(server.settings().model_copy(update={"retry_seconds": 0.5}), backoff_s=0.1)
        with pytest.raises(StoreError, match=r"cannot reach S3 endpoint .* \(after \d attempts in 0\.\d s\)"):
            short.read("s3://outage/after")
        server.restart()


def test_one_server_holds_a_test_suites_worth_of_buckets(s3_server: EmbeddedS3) -> None:
    """Every bucket is a SeaweedFS collection: weed's defaults (7 volumes each, free disk / 128 MB in all) ran out."""
    store = Store(s3_server.settings().model_copy(update={"retry_seconds": 2.0}))
    buckets = [f"many-{index:03d}-{os.getpid()}" for index in range(60)]
    for bucket in buckets:
        s3_server.create_bucket(bucket)
        store.write(f"s3://{bucket}/k", bucket.encode())
    assert [store.read(f"s3://{bucket}/k") for bucket in buckets] == [bucket.encode() for bucket in buckets]
    volumes = {path.stem for path in (s3_server.data_dir / "data").rglob("*.dat")}
    assert all(sum(name.startswith(f"{bucket}_") for name in volumes) == 1 for bucket in buckets), sorted(volumes)[:20]


def test_transient_errors_are_retried(s3_store: tuple[Store, str], s3_server: EmbeddedS3) -> None:
    _, root = s3_store
    with FlakyProxy(s3_server.endpoint, failures=2) as proxy:
        store = Store(s3_server.settings().model_copy(update={"endpoint": proxy.endpoint}))
        store.write(join(root, "k"), b"survived two 503s")
        assert proxy.requests == 3
        assert store.read(join(root, "k")) == b"survived two 503s"
        assert proxy.requests == 4


def test_persistent_server_errors_give_up_after_the_retry_budget(
    s3_store: tuple[Store, str], s3_server: EmbeddedS3
) -> None:
    _, root = s3_store
    with FlakyProxy(s3_server.endpoint, failures=1000) as proxy:
        store = Store(s3_server.settings().model_copy(update={"endpoint": proxy.endpoint}))
        started = time.monotonic()
        store = Store(store.settings.model_copy(update={"retry_seconds": 1.5}))
        with pytest.raises(StoreError, match=r"after 4 attempts in 1\.\d s\): ServiceUnavailable"):
            store.read(join(root, "k"))
        assert proxy.requests == 4
        assert 1.4 <= time.monotonic() - started < 5, "backoff 0.2 + 0.4 + 0.8 s"


def test_permanent_errors_are_not_retried(s3_server: EmbeddedS3) -> None:
    with FlakyProxy(s3_server.endpoint, failures=0) as proxy:
        store = Store(s3_server.settings().model_copy(update={"endpoint": proxy.endpoint}))
        with pytest.raises(StoreError, match="does not exist"):
            store.read("s3://simplear-no-such-bucket/k")
        assert proxy.requests == 1


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="minimum"):
        Store(StoreSettings(), part_size=MIN_PART_SIZE - 1)


# ---- the embedded server itself


def test_embedded_s3_runs_beside_another_and_cleans_up(s3_server: EmbeddedS3) -> None:
    with EmbeddedS3() as second:
        assert second.endpoint != s3_server.endpoint
        second.create_bucket("second")
        store = Store(StoreSettings.from_env(second.env()))
        store.write("s3://second/k", b"independent")
        assert store.read("s3://second/k") == b"independent"
        data_dir = second.data_dir
    assert not data_dir.exists(), "its temporary data dir is gone"
    with pytest.raises(StoreError, match="cannot reach"):
        Store(store.settings.model_copy(update={"retry_seconds": 0})).read("s3://second/k")
