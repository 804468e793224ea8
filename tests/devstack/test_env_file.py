"""`.devstack/env` holds the admin token and every secret: it is created 0600 in one step."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from devstack import up


def test_the_env_file_is_created_private_never_chmodded_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "env"
    target.write_text("OLD=1\n")
    target.chmod(0o644)  # a file left world-readable by an older devstack
    opened: list[tuple[int, int]] = []
    real_open = os.open

    def spy_open(path: Any, flags: int, mode: int = 0o777, *a: Any, **kw: Any) -> int:
        opened.append((flags, mode))
        return real_open(path, flags, mode, *a, **kw)

    def no_chmod(*a: Any, **kw: Any) -> None:
        raise AssertionError("written first and chmodded after: readable in between")

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    up.write_private(target, "API_TOKENS=secret\n")
    assert target.read_text() == "API_TOKENS=secret\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    ((flags, mode),) = opened
    assert mode == 0o600 and flags & os.O_CREAT and flags & os.O_EXCL
    assert [p.name for p in tmp_path.iterdir()] == ["env"]  # no temporary file left behind


def test_write_env_file_writes_through_write_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(up, "STATE", tmp_path)
    monkeypatch.setattr(up, "ENV_FILE", tmp_path / "env")
    up.write_env_file({"DEVSTACK_ADMIN_TOKEN": "adm_x", "API_TOKENS": "devstack-admin:adm_x:admin"})
    assert stat.S_IMODE((tmp_path / "env").stat().st_mode) == 0o600
    assert up.read_env_file(tmp_path / "env")["API_TOKENS"] == "devstack-admin:adm_x:admin"
