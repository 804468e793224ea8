"""Errors of the control API (Twirp errors are twirp.TwirpError)."""

from __future__ import annotations


class ControlError(Exception):
    """A control request cannot be done: HTTP `status`, `code` and the `field` at fault."""

    def __init__(self, status: int, code: str, message: str, field_name: str = ""):
        super().__init__(message)
        self.status, self.code, self.field = status, code, field_name
