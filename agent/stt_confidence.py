"""`FinalTranscripts`: the STT's confidence for each final line, kept until the session
reports the same line (its event carries no confidence)."""

from __future__ import annotations

import unicodedata
from collections import deque


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class FinalTranscripts:
    """Confidence of the STT's final transcripts, noted by the agent's `stt_node` and taken by
    the bridge when the session reports the same line (the session event carries none)."""

    def __init__(self, maxlen: int = 64) -> None:
        self._seen: deque[tuple[str, float]] = deque(maxlen=maxlen)

    def note(self, text: str, confidence: float) -> None:
        self._seen.append((_norm(text), confidence))

    def take(self, text: str) -> float | None:
        key = _norm(text)
        while self._seen:
            seen, confidence = self._seen.popleft()
            if seen == key:
                return confidence
        return None
