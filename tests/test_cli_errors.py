"""Store errors end every `simplear` command with one clear line (exit 1); `--debug` shows the traceback instead.

The three failures a user meets, against the real SeaweedFS server: wrong credentials, S3 down, a missing bucket.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplear.cli import main
from simplear.s3_server import EmbeddedS3

CASES = {
    "wrong credentials": "access denied by S3 endpoint",
    "S3 down": "cannot reach S3 endpoint",
    "missing bucket": "does not exist at S3 endpoint",
}
COMMANDS: dict[str, list[str]] = {
    "shapes": ["--out", "{root}/shapes", "--n", "1", "--eval-per-tag", "1"],
    "tokenize": ["--meta", "{root}/meta.jsonl", "--output", "{root}/tokens", "--no-progress"],
    "train": ["--stage", "pretrain", "--data", "{root}/tokens", "--output", "{root}/run", "--max-steps", "1",
              "--scratch", "{tmp}/scratch"],
    "evaluate": ["--prompts", "{prompts}", "--out", "{root}/eval", "--random-init", "--resolution", "16",
                 "--no-progress", "--device", "cpu"],
    "generate": ["--model", "{root}/model", "--prompt", "a red square", "--out", "{tmp}/generated", "--device", "cpu"],
    "rollout-server": ["--model", "{root}/model", "--device", "cpu"],
}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def case_env(case: str, server: EmbeddedS3) -> tuple[dict[str, str], str]:
    """The S3 environment and store root of a failure case."""
    env = {**server.env(), "SIMPLEAR_S3_RETRY_SECONDS": "0"}
    bucket = "cli-" + secrets.token_hex(6)
    server.create_bucket(bucket)
    if case == "wrong credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + secrets.token_hex(8)
    elif case == "S3 down":
        env["SIMPLEAR_S3_ENDPOINT"] = f"127.0.0.1:{closed_port()}"
    else:
        bucket = "simplear-no-such-bucket"
    return env, f"s3://{bucket}"


@pytest.fixture
def quiet_loggers() -> Iterator[None]:
    """Drop the handlers commands add to the `simplear` logger when run in this process."""
    logger = logging.getLogger("simplear")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:], logger.level = handlers, level


def argv(command: str, root: str, tmp: Path, prompts: Path) -> list[str]:
    """The command line of a command reading from and writing to `root`."""
    return [command, *(a.format(root=root, tmp=tmp, prompts=prompts) for a in COMMANDS[command])]


@pytest.mark.parametrize("case", list(CASES))
def test_every_command_ends_a_store_error_with_one_line(
    case: str, s3_server: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], quiet_loggers: None,
) -> None:
    env, root = case_env(case, s3_server)
    for name, value in {**env, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(closed_port())}.items():
        monkeypatch.setenv(name, value)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "a red square", "tag": "single_object"}) + "\n")
    for command in COMMANDS:
        assert main(argv(command, root, tmp_path, prompts)) == 1, command
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        (line,) = [line for line in err.splitlines() if line.startswith(f"simplear {command}:")]
        assert line.startswith(f"simplear {command}: error: ") and CASES[case] in line, line
        assert root.split("/")[2] in line or "S3 endpoint" in line
    assert main(["demo", "--store", f"{root}/demo", "--out", str(tmp_path / "demo")]) == 1
    (failed,) = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert CASES[case] in failed, failed
    served = subprocess.run(
        [sys.executable, "-m", "simplear.cli", "serve", "--model-dir", f"{root}/model", "--device", "cpu"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )
    assert served.returncode == 1 and "Traceback" not in served.stderr, served.stderr
    assert served.stderr.splitlines()[-1].startswith("simplear serve: error: ") and CASES[case] in served.stderr


def test_debug_shows_the_traceback(s3_server: EmbeddedS3, tmp_path: Path) -> None:
    env, root = case_env("missing bucket", s3_server)
    command = [sys.executable, "-m", "simplear.cli", "shapes", "--out", f"{root}/x", "--n", "1", "--eval-per-tag", "1"]
    plain = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1 and plain.stderr.count("\n") == 1, plain.stderr
    assert plain.stderr.startswith("simplear shapes: error: bucket 'simplear-no-such-bucket' does not exist")
    debug = subprocess.run([*command[:3], "--debug", *command[3:]], env={**os.environ, **env}, capture_output=True,
                           text=True, timeout=300)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "simplear.store.errors.StoreError: bucket" in debug.stderr
    from_env = subprocess.run(command, env={**os.environ, **env, "SIMPLEAR_DEBUG": "1"}, capture_output=True,
                              text=True, timeout=300)
    assert "Traceback" in from_env.stderr
