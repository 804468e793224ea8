"""Helpers shared by the storage bench and its test: a large Ogg-like file and peak RSS."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import psutil

MiB = 1024 * 1024


def write_ogg_like(path: Path, size: int, seed: int = 42) -> str:
    """Write an Ogg-looking file of `size` pseudo-random bytes, 1 MiB at a time; its sha256."""
    rnd = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        written = 0
        while written < size:
            block = rnd.randbytes(min(MiB, size - written))
            if written == 0:
                block = b"OggS" + block[4:]
            fh.write(block)
            digest.update(block)
            written += len(block)
    return digest.hexdigest()


class PeakRSS:
    """Samples this process's RSS every 5 ms in a thread while the `with` block runs."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / MiB
