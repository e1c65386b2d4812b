"""The import layering ARCHITECTURE.md names: core capabilities never import the layers built on them; test modules
share tests/helpers.py and conftest.py, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import simplear.config
import simplear.platform.config

ROOT = Path(__file__).resolve().parents[1]
CORE = ("config", "model", "vision", "sampling", "data", "train")
ABOVE_CORE = ("simplear.platform", "pipelines", "simplear.eval", "simplear.serve", "simplear.demo")


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, lazily imported ones included."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module)
    return modules


def imports_of(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    """`file: module` for each import under folder of a module in (or under) one of `forbidden`."""
    return [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted(folder.rglob("*.py"))
        for module in imported_modules(path)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    ]


@pytest.mark.parametrize("capability", CORE)
def test_core_capabilities_do_not_import_the_layers_above(capability: str) -> None:
    assert imports_of(ROOT / "simplear" / capability, ABOVE_CORE) == []


def test_pipelines_do_not_import_the_demo() -> None:
    """The report the pipelines write lives in simplear/report, not in the demo that also shows it."""
    assert imports_of(ROOT / "pipelines", ("simplear.demo",)) == []


def test_the_platform_types_are_not_on_the_config_package() -> None:
    """PlatformConfig, node pools and images live behind the platform line: simplear.config hands on none of them."""
    platform_types = {
        name for name, value in vars(simplear.platform.config).items()
        if getattr(value, "__module__", None) == simplear.platform.config.__name__
    }
    assert {"PlatformConfig", "NodePool", "Images"} <= platform_types
    assert platform_types & set(dir(simplear.config)) == set()


def test_test_modules_import_no_other_test_module() -> None:
    """What tests share lives in tests/helpers.py (plain functions) and tests/conftest.py (fixtures)."""
    cross_imports = [f"{path.relative_to(ROOT)}: {module}" for path in sorted((ROOT / "tests").glob("*.py"))
                     for module in imported_modules(path) if module.split(".")[0].startswith("test_")]
    assert cross_imports == []
