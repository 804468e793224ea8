"""`ops temporal setup`: register the custom search attributes the workflows upsert.

A workflow that upserts an unregistered attribute fails its workflow task and hangs, so this
runs before the first worker. Self-hosted and dev servers take it through the operator service;
Temporal Cloud does not (its API refuses it): there, the `tcld` command to run is printed.
(The `prod` branch adds the same registration at worker start-up in core/temporal.py; when
both land, this should call that one function.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from workflows import search as sa

KEYS: list[SearchAttributeKey] = [
    sa.CALL_STATUS,
    sa.RECORDING_STATUS,
    sa.ROOM_NAME,
    sa.CUSTOMER_NAME,
    sa.SILENCE_ALERTS,
]
_CLOUD_REFUSALS = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED)
_TCLD_TYPE = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.TEXT: "Text",
}


@dataclass
class SetupResult:
    namespace: str
    present: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    wrong_type: list[str] = field(default_factory=list)
    manual_command: str = ""  # set when the server refused: run this (Temporal Cloud)


def is_cloud(address: str) -> bool:
    return address.split(":")[0].endswith(".tmprl.cloud")


def tcld_command(namespace: str, names: list[str]) -> str:
    wanted = [k for k in KEYS if k.name in names]
    flags = " ".join(
        f'--search-attribute "{k.name}={_TCLD_TYPE[k.indexed_value_type]}"' for k in wanted
    )
    return f"tcld namespace search-attributes add --namespace {namespace} {flags}"


async def register_search_attributes(client: Client, address: str = "") -> SetupResult:
    namespace = client.namespace
    result = SetupResult(namespace=namespace)
    names = [k.name for k in KEYS]
    if is_cloud(address):
        result.manual_command = tcld_command(namespace, names)
        return result
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as exc:
        if exc.status not in _CLOUD_REFUSALS:
            raise
        result.manual_command = tcld_command(namespace, names)
        return result
    missing = {}
    for key in KEYS:
        have = listed.custom_attributes.get(key.name)
        want = IndexedValueType.ValueType(int(key.indexed_value_type))
        if have is None:
            missing[key.name] = want
        elif have != want:
            result.wrong_type.append(key.name)
        else:
            result.present.append(key.name)
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:  # another process was first
                result.present += list(missing)
                return result
            if exc.status not in _CLOUD_REFUSALS:
                raise
            result.manual_command = tcld_command(namespace, list(missing))
            return result
        result.added = list(missing)
    return result
