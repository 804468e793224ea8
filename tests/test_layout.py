"""Who may import whom among the top-level packages: testkit/ is what bench/ and tests/ share, so
bench/ never reaches into tests/, and production code imports neither (the image has neither)."""

from __future__ import annotations

import ast

import pytest

from core.settings import ROOT

PRODUCTION = ["core", "db", "workflows", "activities", "api", "agent", "ops", "devstack"]


def imported_packages(source: str) -> set[str]:
    """The top-level names a module's absolute imports name, wherever in the module they sit."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def offenders(dirs: list[str], forbidden: set[str]) -> dict[str, set[str]]:
    """Each module under `dirs` (relative to the repository) that imports a `forbidden` name."""
    found = {}
    for d in dirs:
        path = ROOT / d
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            bad = imported_packages(file.read_text()) & forbidden
            if bad:
                found[str(file.relative_to(ROOT))] = bad
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import tests",
        "import tests.workflows.standins as s",
        "from tests.fixtures.services import x",
        "def f():\n    from tests import conftest\n",
    ],
)
def test_an_import_of_tests_is_seen(source: str) -> None:
    assert "tests" in imported_packages(source)


def test_a_look_alike_is_not_an_import_of_tests() -> None:
    assert "tests" not in imported_packages("import testkit\nfrom .tests import x\n# tests\n")


def test_bench_and_testkit_never_import_tests() -> None:
    assert offenders(["bench", "testkit"], {"tests"}) == {}


def test_production_code_imports_neither_tests_nor_testkit() -> None:
    assert offenders([*PRODUCTION, "worker.py"], {"tests", "testkit"}) == {}


def test_the_image_leaves_the_test_support_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"tests", "testkit"} <= ignored
