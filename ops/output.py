"""How the CLI prints: a table or `--json` on stdout, progress and messages on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


class Output:
    """One per command run; `json` switches stdout to one JSON document per command."""

    def __init__(self, as_json: bool, out: TextIO | None = None, err: TextIO | None = None):
        self.json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def emit(self, data: Any, *, columns: Sequence[str] = (), title: str = "") -> None:
        """`data` is a dict or a list of dicts; a list prints as a table of `columns`."""
        if self.json:
            self.out.write(json.dumps(data, default=str, indent=2) + "\n")
            return
        if title:
            self.out.write(title + "\n")
        if isinstance(data, list):
            self.out.write(table(data, columns) + "\n")
        elif isinstance(data, dict):
            width = max((len(k) for k in data), default=0)
            for k, v in data.items():
                self.out.write(f"{k.ljust(width)}  {_cell(v)}\n")
        else:
            self.out.write(f"{data}\n")

    def note(self, message: str) -> None:
        self.err.write(message + "\n")
        self.err.flush()

    def progress(self, total: int) -> Progress:
        return Progress(total, self.err)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cols = list(columns) or list(rows[0])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


class Progress:
    """A bar redrawn in place on a terminal; one line per step otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def step(self, label: str) -> None:
        self.done += 1
        filled = self.WIDTH * self.done // self.total if self.total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"[{bar}] {self.done}/{self.total} {label}"
        self.stream.write(("\r" + line.ljust(100)) if self.tty else line + "\n")
        if self.tty and self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
