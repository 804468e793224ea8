"""The one way every process (worker, API, agent, tests, ops CLI) connects to Temporal.

`data_converter(settings)` is the default converter plus the AES-GCM payload codec when
`PAYLOAD_KEYS` is set (failure messages and stack traces encrypted with the payloads);
workers, clients and the Web UI codec endpoint must all use the same keys.
`connect_temporal` also speaks TLS: mTLS with `TEMPORAL_TLS_CERT` + `TEMPORAL_TLS_KEY` (PEM file
paths or PEM text), a private CA with `TEMPORAL_TLS_CA`, or an API key (`TEMPORAL_API_KEY`,
Temporal Cloud), which implies TLS. `ensure_search_attributes` registers the custom search
attributes the workflows upsert, or says exactly what to run where the server does not allow it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import temporalio.converter
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, TLSConfig
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from core.codec import codec_from_settings
from core.settings import Settings, SettingsError

# The design's custom search attributes (name -> type), as `temporal` and `tcld` spell types.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "CallStatus": "Keyword",
    "RecordingStatus": "Keyword",
    "RoomName": "Keyword",
    "CustomerName": "Keyword",
    "SilenceAlerts": "Int",
    "CallbackStatus": "Keyword",
    "CallbackDue": "Datetime",
}
_INDEXED = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}
# What a server answers when it will not let a client manage search attributes (Temporal Cloud).
_REFUSED = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED)


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached at TEMPORAL_ADDRESS (message says where and why)."""


class SearchAttributesMissing(RuntimeError):
    """The server lacks search attributes and refused to add them: the message says what to run."""


def data_converter(settings: Settings) -> temporalio.converter.DataConverter:
    """The data converter for clients and workers: encrypting when payload keys are set.

    With keys, failures are encrypted too: their message and stack trace move into the
    failure's encoded attributes (the SDK's `DefaultFailureConverterWithEncodedAttributes`),
    which the codec encrypts, so history shows "Encoded failure" to whoever lacks the keys
    (an error can quote a name or a line). Read a failure from history with
    `client.data_converter.decode_failure(...)`, never its `message` field."""
    codec = codec_from_settings(settings)
    if codec is None:
        return temporalio.converter.default()
    return dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=codec,
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )


def _pem(name: str, value: str) -> bytes:
    """PEM text as given, or the contents of the file it names."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{name} names a file that cannot be read: {exc.strerror}") from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The `tls` argument of Client.connect for these settings (False: plain TCP).

    Raises SettingsError when only one of TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY is set, or a
    file cannot be read (the message never holds key material).
    """
    cert = settings.TEMPORAL_TLS_CERT
    key = settings.TEMPORAL_TLS_KEY.get_secret_value() if settings.TEMPORAL_TLS_KEY else ""
    if bool(cert) != bool(key):
        raise SettingsError(
            "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS): set both or neither"
        )
    ca = settings.TEMPORAL_TLS_CA
    if not (cert or ca or settings.TEMPORAL_TLS or settings.TEMPORAL_API_KEY):
        return False
    return TLSConfig(
        server_root_ca_cert=_pem("TEMPORAL_TLS_CA", ca) if ca else None,
        client_cert=_pem("TEMPORAL_TLS_CERT", cert) if cert else None,
        client_private_key=_pem("TEMPORAL_TLS_KEY", key) if key else None,
    )


async def connect_temporal(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to `TEMPORAL_ADDRESS` / `TEMPORAL_NAMESPACE` with `data_converter(settings)`,
    TLS and API key as configured (and the tracing interceptor when `core.telemetry` tracing is
    on; `runtime` carries the worker's SDK metrics exporter).

    Raises `TemporalUnavailable` naming TEMPORAL_ADDRESS when the server cannot be reached, or
    the TLS variables when they are incomplete or unreadable.
    """
    api_key = settings.TEMPORAL_API_KEY.get_secret_value() if settings.TEMPORAL_API_KEY else None
    try:
        tls = tls_config(settings)
    except SettingsError as exc:
        raise TemporalUnavailable(f"cannot connect to Temporal: {exc}") from None
    from core.telemetry import temporal_interceptors
    from core.versioning import UnversionedWorkers

    try:
        return await Client.connect(
            settings.TEMPORAL_ADDRESS,
            namespace=settings.TEMPORAL_NAMESPACE,
            data_converter=data_converter(settings),
            interceptors=temporal_interceptors(),
            runtime=runtime,
            tls=tls,
            api_key=api_key or None,
            # Its unversioned workers must not send the workflows' versioning behavior.
            plugins=[UnversionedWorkers()],
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot connect to Temporal at TEMPORAL_ADDRESS={settings.TEMPORAL_ADDRESS} "
            f"(namespace {settings.TEMPORAL_NAMESPACE}, tls {'on' if tls else 'off'}): {exc}"
        ) from exc


def tcld_command(namespace: str, names: list[str] | None = None) -> str:
    """The `tcld` command that creates the search attributes `names` (default all): Temporal
    Cloud's way, as its API refuses clients that try."""
    wanted = {n: SEARCH_ATTRIBUTES[n] for n in (names or list(SEARCH_ATTRIBUTES))}
    flags = " ".join(f'--search-attribute "{n}={t}"' for n, t in wanted.items())
    return f"tcld namespace search-attributes add --namespace {namespace} {flags}"


def search_attribute_commands(namespace: str, names: list[str] | None = None) -> str:
    """The commands that create the search attributes `names` (default all) by hand."""
    wanted = {n: SEARCH_ATTRIBUTES[n] for n in (names or list(SEARCH_ATTRIBUTES))}
    cli = " ".join(f"--name {n} --type {t}" for n, t in wanted.items())
    return (
        f"  Temporal Cloud: {tcld_command(namespace, names)}\n"
        f"  self-hosted:    temporal operator search-attribute create --namespace {namespace} {cli}"
    )


@dataclasses.dataclass
class SearchAttributeState:
    """What a namespace holds of SEARCH_ATTRIBUTES (each list in SEARCH_ATTRIBUTES' order)."""

    present: list[str]
    missing: list[str]
    wrong_type: list[str]


async def search_attribute_state(client: Client, namespace: str) -> SearchAttributeState:
    """Which of SEARCH_ATTRIBUTES the namespace has, lacks, or has with another type. Raises
    SearchAttributesMissing with the commands to run when the server will not list them."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as exc:
        if exc.status not in _REFUSED:
            raise
        raise SearchAttributesMissing(
            f"Temporal refused to list search attributes of namespace {namespace} "
            f"({exc.status.name}); make sure these exist:\n{search_attribute_commands(namespace)}"
        ) from None
    have = dict(listed.custom_attributes)
    state = SearchAttributeState(present=[], missing=[], wrong_type=[])
    for name, kind in SEARCH_ATTRIBUTES.items():
        if name not in have:
            state.missing.append(name)
        elif have[name] != _INDEXED[kind]:
            state.wrong_type.append(name)
        else:
            state.present.append(name)
    return state


async def add_search_attributes(client: Client, namespace: str, names: list[str]) -> list[str]:
    """Add the search attributes `names`; the names added ([] when another process was first).
    Raises SearchAttributesMissing with the commands to run when the server refuses."""
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={n: _INDEXED[SEARCH_ATTRIBUTES[n]] for n in names},
            )
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:  # another worker won the race
            return []
        if exc.status not in _REFUSED:
            raise
        raise SearchAttributesMissing(
            f"namespace {namespace} lacks search attributes {', '.join(names)} and Temporal "
            f"refused to add them ({exc.status.name}); run:\n"
            f"{search_attribute_commands(namespace, names)}"
        ) from None
    return names


async def ensure_search_attributes(client: Client, namespace: str | None = None) -> list[str]:
    """Register whichever of SEARCH_ATTRIBUTES the namespace lacks; the names added.

    Idempotent (and safe when several workers start at once). Raises SearchAttributesMissing
    with the exact commands to run when the server refuses (Temporal Cloud manages them with
    `tcld` or its UI), or when an attribute exists with another type.
    """
    ns = namespace or client.namespace
    state = await search_attribute_state(client, ns)
    if state.wrong_type:
        raise SearchAttributesMissing(
            f"namespace {ns} has {', '.join(state.wrong_type)} with another type than "
            + ", ".join(f"{n}={SEARCH_ATTRIBUTES[n]}" for n in state.wrong_type)
        )
    if not state.missing:
        return []
    return await add_search_attributes(client, ns, state.missing)


def exit_process(code: int = 0) -> NoReturn:
    """Leave a process that has used a Temporal client or worker: flush the logs and stdio, then
    `os._exit(code)` without interpreter teardown.

    The Temporal core's Tokio threads can call into a finalizing interpreter, which then aborts
    (SIGABRT, "Fatal Python error: PyGILState_Release: thread state ... must be current when
    releasing"; temporalio/sdk-python#300). A process that had finished its work cleanly would
    exit -6 at random; CI saw it in two subprocesses of one run. Every `__main__` that touched
    Temporal ends here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say on it
            pass
    os._exit(code)
