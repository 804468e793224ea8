"""Every test a document names as the proof of a promise exists: a reference of the form
`tests/...py` or `tests/...py::test_name` (or `::Class::test_name`) in README.md, docs/*.md and the
component READMEs points at a file that exists and, when a name is given, at a test function
defined in it. A renamed or deleted test then fails here instead of leaving a promise unproven."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from core.settings import ROOT

DOCUMENTS = [
    "README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    "agent/README.md",
    "web/README.md",
    "devstack/livekit/README.md",
]

# `tests/a/test_b.py`, `tests/a/test_b.py::test_c`, `tests/a/test_b.py::TestX::test_c`,
# a parametrised id's `[...]` left out.
REFERENCE = re.compile(r"\btests/\w[\w/.-]*?\.py(?:::\w+)*")


def references(text: str) -> list[str]:
    """The test references a document's text holds, in order, each once."""
    return list(dict.fromkeys(REFERENCE.findall(text)))


def defined_tests(source: str) -> set[str]:
    """`name` of every test function a module defines at its top level, and `Class::name` of every
    one in a class, as pytest's node ids spell them."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return {n for n in names if n.split("::")[-1].startswith(("test", "Test"))}


def broken(reference: str) -> str | None:
    """Why `reference` does not point at a test, or None when it does."""
    path, _, name = reference.partition("::")
    file = ROOT / path
    if not file.is_file():
        return f"{path} does not exist"
    if name and name not in defined_tests(file.read_text()):
        return f"{path} defines no test {name}"
    return None


def test_the_pattern_finds_files_and_test_names() -> None:
    text = (
        "proved (`tests/chaos/test_chaos.py::test_worker_killed`), and in tests/api/test_x.py; "
        "`tests/web/test_y.py::TestPage::test_z`; not `tests/chaos/`, tests/histories nor the "
        "pattern `tests/...py` itself."
    )
    assert references(text) == [
        "tests/chaos/test_chaos.py::test_worker_killed",
        "tests/api/test_x.py",
        "tests/web/test_y.py::TestPage::test_z",
    ]


def test_a_missing_file_or_test_is_seen(tmp_path: Path) -> None:
    assert broken("tests/test_docs_claims.py") is None
    assert broken("tests/test_docs_claims.py::test_a_missing_file_or_test_is_seen") is None
    assert broken("tests/test_docs_claims.py::test_renamed_away") == (
        "tests/test_docs_claims.py defines no test test_renamed_away"
    )
    assert broken("tests/nowhere/test_gone.py") == "tests/nowhere/test_gone.py does not exist"
    source = (
        "class TestA:\n    def test_b(self): ...\n    def helper(self): ...\ndef fixture(): ...\n"
    )
    assert defined_tests(source) == {"TestA", "TestA::test_b"}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_test_a_document_names_exists(document: str) -> None:
    found = references((ROOT / document).read_text())
    problems = [f"{ref}: {why}" for ref in found if (why := broken(ref))]
    assert problems == [], f"{document} names tests that are not there:\n" + "\n".join(problems)


def test_the_documents_name_their_proofs() -> None:
    # Guards the guard: if the pattern stopped matching, every document would pass vacuously.
    assert len(references((ROOT / "README.md").read_text())) >= 10
