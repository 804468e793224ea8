"""Who may import whom among the top-level packages: testkit/ is what bench/ and tests/ share, so
bench/ never reaches into tests/, and production code imports neither (the image has neither)."""

from __future__ import annotations

import ast
import tomllib

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


# Imports that mean a process talks to Temporal (a client, a worker or a server it starts).
TEMPORAL_USERS = ("temporalio", "core.temporal", "ops.connect", "api.app", "bench.stack", "testkit")


def talks_to_temporal(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = {"api.app" if node.level and node.module == "app" else node.module}
        else:
            continue
        if any(m == u or m.startswith(u + ".") for m in modules for u in TEMPORAL_USERS):
            return True
    return False


def temporal_entry_points() -> dict[str, str]:
    """Each module a process starts from (a `__main__` block, or a console script of
    pyproject.toml) that talks to Temporal -> its source."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    script_files = {target.split(":")[0].replace(".", "/") + ".py" for target in scripts.values()}
    found = {}
    for top in [*PRODUCTION, "bench", "testkit", "tests", "worker.py"]:
        path = ROOT / top
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            rel = str(file.relative_to(ROOT))
            source = file.read_text()
            starts = '__name__ == "__main__"' in source or rel in script_files
            if starts and talks_to_temporal(source):
                found[rel] = source
    return found


def test_every_process_that_talks_to_temporal_exits_without_teardown() -> None:
    """The Temporal core's threads can abort a finalizing interpreter (SIGABRT at exit: CI saw
    two clean subprocesses exit -6 in one run): every such process leaves through
    `core.temporal.exit_process`."""
    entries = temporal_entry_points()
    seen = {"worker.py", "ops/cli.py", "api/__main__.py", "tests/chaos/agent_process.py"}
    assert seen <= set(entries), "the scan no longer finds the entry points it must"
    missing = [name for name, source in entries.items() if "exit_process(" not in source]
    assert not missing, f"end these with core.temporal.exit_process: {missing}"
