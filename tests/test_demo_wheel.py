"""`simplear demo --quick` from the wheel, installed into a fresh virtualenv and run outside the checkout: the
compiled pipelines and everything else the demo reads ship inside the wheel, nothing comes from the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from helpers import build_wheel

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STAGES = ("pretrain", "sft", "grpo")


def fresh_venv(path: Path) -> Path:
    """A new virtualenv holding no simplear whose third-party packages are this environment's: a .pth file adds this
    environment's site-packages as a plain path entry, so the .pth files in it (the editable simplear finder's
    among them) are not processed. Its Python."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_quick_demo_runs_from_the_installed_wheel_outside_the_checkout(tmp_path: Path) -> None:
    """The wheel installed with pip into a fresh venv: `simplear demo --quick` there, started in an empty directory,
    trains, aligns and scores every stage; simplear is imported from the venv, and the checkout's pipelines/ is not
    importable."""
    env_dir, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    python = fresh_venv(env_dir)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    before = subprocess.run([str(python), "-c", "import simplear"], cwd=work, env=env, capture_output=True)
    assert before.returncode != 0, "the fresh venv sees this checkout's simplear before the wheel is installed"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(build_wheel(tmp_path))], check=True, timeout=300)
    probe = ("import importlib.util, json, simplear; "
             "print(json.dumps([simplear.__file__, importlib.util.find_spec('pipelines') is None]))")
    found = subprocess.run([str(python), "-c", probe], cwd=work, env=env, capture_output=True, text=True, check=True)
    module_file, no_pipelines = json.loads(found.stdout)
    assert Path(module_file).is_relative_to(env_dir) and no_pipelines, found.stdout

    out = work / "demo"
    done = subprocess.run([str(env_dir / "bin" / "simplear"), "demo", "--quick", "--out", str(out), "--runs-dir",
                           str(work / "runs")], cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    report = json.loads((out / "report.json").read_text())
    assert list(report["stages"]) == ["data", "tokenize", *STAGES]
    for name in STAGES:
        assert 0.0 <= report["stages"][name]["overall"] <= 1.0, name
    assert (out / "report.html").is_file()
