"""Fault injection: what a test asks to go wrong, and how many times.

A fault is `{"kind": ..., "count": N, <params>, <match>}`. It fires on the next N occasions
that match (count 0: until cleared), then disappears. The kinds, their parameters (with
defaults) and the fields they can be matched on are in KINDS; README.md explains each.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

UPLOAD_DENIED = (
    "operation error S3: PutObject, https response error StatusCode: 403, "
    "api error AccessDenied: Access Denied"
)
EGRESS_END_STATUSES = ("EGRESS_FAILED", "EGRESS_LIMIT_REACHED", "EGRESS_ABORTED")


@dataclass(frozen=True)
class Kind:
    params: dict[str, tuple[type | tuple[type, ...], Any]]  # name -> (type, default)
    match: tuple[str, ...] = ()
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)


_NUM = (int, float)
_WEBHOOK = ("event",)
_RECORDING = ("egress_id",)

KINDS: dict[str, Kind] = {
    # The next N Twirp calls (optionally only `method`, e.g. "StopEgress") answer 503, or with
    # mode "drop" get no answer at all: the connection is closed (the server unreachable).
    "twirp_unavailable": Kind(
        {"status": (int, 503), "mode": (str, "answer")}, ("method",), {"mode": ("answer", "drop")}
    ),
    # StartRoomCompositeEgress fails: "error" answers a Twirp error; "failed" accepts the
    # request and the egress then ends EGRESS_FAILED without ever becoming active.
    "egress_start_fail": Kind(
        {
            "mode": (str, "error"),
            "code": (str, "unavailable"),
            "msg": (str, "no response from servers"),
        },
        ("room",),
        {"mode": ("error", "failed")},
    ),
    # An egress ends with `status` instead of EGRESS_COMPLETE: at StopEgress / room end when
    # after_s is null, or on its own after_s seconds after it became active. `partial_file`:
    # a FAILED egress still uploads what it recorded (Egress closes, so uploads, every file
    # sink that got its EOS before the pipeline failed: pkg/pipeline/controller.go).
    "egress_end": Kind(
        {
            "status": (str, "EGRESS_FAILED"),
            "after_s": (_NUM, None),
            "error": (str, ""),
            "partial_file": (bool, False),
        },
        ("egress_id", "room"),
        {"status": EGRESS_END_STATUSES},
    ),
    # The finished file's upload fails with `error` (Egress's text follows "S3 upload
    # failed: "). With a backup bucket configured the file goes there (backup_storage_used)
    # unless `backup_error` is set too; otherwise the egress ends EGRESS_FAILED.
    "egress_upload_fail": Kind(
        {"error": (str, UPLOAD_DENIED), "backup_error": (str, "")}, ("egress_id", "room")
    ),
    # Recording downloads (the debug-served copy): throttled, cut after `after_bytes` (default half), or an HTTP error.
    "recording_slow": Kind({"bytes_per_s": (int, 65536)}, _RECORDING),
    "recording_cut": Kind({"after_bytes": (int, None)}, _RECORDING),
    "recording_error": Kind({"status": (int, 503)}, _RECORDING),
    # Webhooks (optionally only `event`, e.g. "egress_ended").
    "webhook_drop": Kind({}, _WEBHOOK),
    "webhook_duplicate": Kind({"copies": (int, 2)}, _WEBHOOK),
    "webhook_delay": Kind({"delay_s": (_NUM, 2.0)}, _WEBHOOK),
    "webhook_reorder": Kind({"hold_s": (_NUM, 2.0)}, _WEBHOOK),
    "webhook_unsigned": Kind({}, _WEBHOOK),
    "webhook_bad_signature": Kind({}, _WEBHOOK),
}


class FaultError(ValueError):
    """A fault request is invalid; `field` names the offending field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass
class Fault:
    id: str
    kind: str
    count: int  # remaining firings; 0 = until cleared
    params: dict[str, Any]
    match: dict[str, str]
    fired: int = 0
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "count": self.count,
            "fired": self.fired,
            **self.params,
            **self.match,
        }


class Faults:
    """The active faults, in the order they were set."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        """Validate a fault request (see KINDS) and activate it; raises FaultError."""
        if not isinstance(spec, dict):
            raise FaultError("kind", "body must be a JSON object with a 'kind'")
        kind_name = spec.get("kind")
        if kind_name not in KINDS:
            raise FaultError("kind", f"kind must be one of {sorted(KINDS)}, got {kind_name!r}")
        kind = KINDS[kind_name]
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise FaultError("count", "count must be an integer >= 0 (0: until cleared)")
        allowed = {"kind", "count", *kind.params, *kind.match}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise FaultError(unknown[0], f"{kind_name} takes no field {unknown[0]!r}")
        params: dict[str, Any] = {}
        for name, (typ, default) in kind.params.items():
            value = spec.get(name, default)
            is_bool = isinstance(value, bool)
            if value is not None and (not isinstance(value, typ) or (is_bool and typ is not bool)):
                raise FaultError(name, f"{name} has the wrong type")
            if isinstance(value, _NUM) and value < 0:
                raise FaultError(name, f"{name} must not be negative")
            if name in kind.choices and value not in kind.choices[name]:
                raise FaultError(name, f"{name} must be one of {list(kind.choices[name])}")
            params[name] = value
        match: dict[str, str] = {}
        for name in kind.match:
            if name in spec:
                if not isinstance(spec[name], str) or not spec[name]:
                    raise FaultError(name, f"{name} must be a non-empty string")
                match[name] = spec[name]
        fault = Fault(f"F{next(self._ids)}", kind_name, count, params, match)
        self._faults.append(fault)
        return fault

    def take(self, kind: str, **context: str) -> Fault | None:
        """The first active fault of `kind` matching `context`, consumed once; None if none."""
        for fault in self._faults:
            if fault.kind != kind:
                continue
            if any(context.get(k) != v for k, v in fault.match.items()):
                continue
            fault.fired += 1
            if fault.count:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
            return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self._faults]

    def remove(self, fault_id: str) -> bool:
        for fault in self._faults:
            if fault.id == fault_id:
                self._faults.remove(fault)
                return True
        return False

    def clear(self) -> int:
        n = len(self._faults)
        self._faults.clear()
        return n
