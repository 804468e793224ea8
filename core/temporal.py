"""The one way every process (worker, API, agent, tests) connects to Temporal.

`data_converter(settings)` is the default converter plus the AES-GCM payload codec when
`PAYLOAD_KEYS` is set; workers, clients and the Web UI codec endpoint must all use the same keys.
"""

from __future__ import annotations

import dataclasses

import temporalio.converter
from temporalio.client import Client
from temporalio.runtime import Runtime

from core.codec import codec_from_settings
from core.settings import Settings


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached at TEMPORAL_ADDRESS (message says where and why)."""


def data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    """The data converter for clients and workers: encrypting when payload keys are set."""
    codec = codec_from_settings(settings)
    if codec is None:
        return temporalio.converter.default()
    return dataclasses.replace(temporalio.converter.default(), payload_codec=codec)


async def connect_temporal(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to `TEMPORAL_ADDRESS` / `TEMPORAL_NAMESPACE` with `data_converter(settings)`
    (and the tracing interceptor when `core.telemetry` tracing is on; `runtime` carries the
    worker's SDK metrics exporter).

    Raises `TemporalUnavailable` naming TEMPORAL_ADDRESS when the server cannot be reached.
    """
    from core.telemetry import temporal_interceptors

    try:
        return await Client.connect(
            settings.TEMPORAL_ADDRESS,
            namespace=settings.TEMPORAL_NAMESPACE,
            data_converter=data_converter(settings),
            interceptors=temporal_interceptors(),
            runtime=runtime,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot connect to Temporal at TEMPORAL_ADDRESS={settings.TEMPORAL_ADDRESS} "
            f"(namespace {settings.TEMPORAL_NAMESPACE}): {exc}"
        ) from exc
