"""`ops temporal setup`: register the custom search attributes the workflows upsert.

A workflow that upserts an unregistered attribute fails its workflow task and hangs, so this
runs before the first worker. Self-hosted and dev servers take it through the operator service;
Temporal Cloud does not (its API refuses it): there, the `tcld` command to run is printed.
The registration itself is the worker's own (`core.temporal`); this reports what it found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from core.temporal import (
    SearchAttributesMissing,
    add_search_attributes,
    search_attribute_state,
    tcld_command,
)


@dataclass
class SetupResult:
    namespace: str
    present: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    wrong_type: list[str] = field(default_factory=list)
    manual_command: str = ""  # set when the server refused: run this (Temporal Cloud)


def is_cloud(address: str) -> bool:
    return address.split(":")[0].endswith(".tmprl.cloud")


async def register_search_attributes(client: Client, address: str = "") -> SetupResult:
    namespace = client.namespace
    result = SetupResult(namespace=namespace)
    if is_cloud(address):
        result.manual_command = tcld_command(namespace)
        return result
    try:
        state = await search_attribute_state(client, namespace)
    except SearchAttributesMissing:
        result.manual_command = tcld_command(namespace)
        return result
    result.present, result.wrong_type = state.present, state.wrong_type
    if state.missing:
        try:
            added = await add_search_attributes(client, namespace, state.missing)
        except SearchAttributesMissing:
            result.manual_command = tcld_command(namespace, state.missing)
            return result
        if added:
            result.added = added
        else:  # another process was first
            result.present += state.missing
    return result
