"""The compiled Kubeflow pipelines, shipped as package data so that `simplear demo` runs from an installed wheel."""

from pathlib import Path

COMPILED_DIR = Path(__file__).resolve().parent


def compiled_pipeline(name: str) -> Path:
    """The compiled pipeline `<name>.yaml`; FileNotFoundError naming the ones there are."""
    path = COMPILED_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in COMPILED_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no compiled pipeline {name!r}; compiled: {known}")
    return path
