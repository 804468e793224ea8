"""Peak resident memory of this process while a block runs (used by benches and tests)."""

from __future__ import annotations

import threading

import psutil

MiB = 1024 * 1024


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
