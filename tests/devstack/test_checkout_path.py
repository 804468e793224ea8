"""The suite works from a checkout anywhere: a clone in a 0700 `mktemp -d` (where a PostgreSQL
run as another system user could not reach the venv's binaries) runs the suite's PostgreSQL
fixture, and the directory is left as private as it was."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from core.settings import ROOT


@pytest.mark.skipif(
    shutil.which("uv") is None or shutil.which("git") is None or not (ROOT / ".git").exists(),
    reason="needs uv, git and a git checkout to clone",
)
def test_the_postgres_fixture_works_from_a_clone_in_a_private_temp_dir() -> None:
    private = Path(tempfile.mkdtemp(prefix="checkout-"))  # 0700, like `mktemp -d`
    try:
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        clone = private / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "DEVSTACK"))}
        env["UV_OFFLINE"] = "1"  # the locked wheels are in uv's cache: nothing is downloaded
        subprocess.run(
            ["uv", "sync", "--frozen", "-q"], cwd=clone, env=env, check=True, timeout=300
        )
        done = subprocess.run(
            ["uv", "run", "--frozen", "pytest", "-q", "-x", "-p", "no:cacheprovider",
             "tests/devstack/test_migrations.py"],
            cwd=clone, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert "passed" in done.stdout
        assert stat.S_IMODE(private.stat().st_mode) == 0o700  # nothing was opened up
    finally:
        shutil.rmtree(private, ignore_errors=True)
