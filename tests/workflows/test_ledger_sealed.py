"""The ledger is sealed: `CallWorkflow` and its healing and recording halves read the call's state through
`CallLedger` but change it only by calling its methods (no write behind its back)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUTATORS = {"append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault"}


def _on_state(node: ast.AST) -> bool:
    """True for an expression reached through `self.book.s` (or a `self.s` alias)."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        base = node.value
        if isinstance(base, ast.Attribute) and base.attr == "s":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "s" and isinstance(base, ast.Name):
            return True
        node = base
    return False


def writes_to_state(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS:
                targets = [node.func.value]
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        if any(_on_state(t) or (isinstance(t, ast.Attribute) and t.attr == "s") for t in flat):
            lines.append(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize(
    "path", ["workflows/call.py", "workflows/healing.py", "workflows/recorder.py"]
)
def test_the_workflow_changes_the_calls_state_only_through_the_ledger(path: str) -> None:
    assert writes_to_state((ROOT / path).read_text()) == [], f"{path} writes the ledger's state"


def test_the_check_finds_a_write_behind_the_ledgers_back() -> None:
    code = (
        "self.s = self.book.s\n"
        "self.book.s.egress_attempts += 1\n"
        "self.book.s.participants.append(p)\n"
        "self.book.s.egress.status = 'x'\n"
        "self.book.s.status\n"
    )
    assert writes_to_state(code) == [1, 2, 3, 4]
