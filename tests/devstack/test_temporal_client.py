"""core.temporal: TLS / API-key settings become the client's connection options, and the worker's
search-attribute registration works on a bare dev server (none registered) and is idempotent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, TLSConfig

from core.settings import load_settings
from core.temporal import (
    SEARCH_ATTRIBUTES,
    TemporalUnavailable,
    connect_temporal,
    ensure_search_attributes,
    search_attribute_commands,
    tls_config,
)
from devstack.services import TEMPORAL_BIN, ManagedProcess, free_port

BASE = dict(
    DATABASE_URL="postgresql://x@h/db", MINIO_ENDPOINT="h:9000", MINIO_ACCESS_KEY="a",
    MINIO_SECRET_KEY="b", LIVEKIT_URL="ws://h", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s",
    API_TOKENS="t0123456789abcdef:admin",
)  # fmt: skip
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def test_no_tls_settings_is_plain_tcp() -> None:
    assert tls_config(load_settings(**BASE)) is False


def test_mtls_from_files_and_pem_text(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text(CERT)
    (tmp_path / "ca.pem").write_text(CERT + "ca")
    s = load_settings(
        **BASE, TEMPORAL_TLS_CERT=str(tmp_path / "client.pem"), TEMPORAL_TLS_KEY=KEY,
        TEMPORAL_TLS_CA=str(tmp_path / "ca.pem"),
    )  # fmt: skip
    tls = tls_config(s)
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == CERT.encode() and tls.client_private_key == KEY.encode()
    assert tls.server_root_ca_cert == (CERT + "ca").encode()


def test_an_api_key_implies_tls_with_system_roots() -> None:
    tls = tls_config(load_settings(**BASE, TEMPORAL_API_KEY="cloud-key"))
    assert isinstance(tls, TLSConfig) and tls.client_cert is None


async def test_half_an_mtls_pair_or_a_missing_file_is_named_without_key_material(
    tmp_path: Path,
) -> None:
    with pytest.raises(TemporalUnavailable, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"):
        await connect_temporal(load_settings(**BASE, TEMPORAL_TLS_KEY=KEY))
    with pytest.raises(TemporalUnavailable, match="TEMPORAL_TLS_CA") as err:
        await connect_temporal(load_settings(**BASE, TEMPORAL_TLS_CA=str(tmp_path / "no.pem")))
    assert "BEGIN" not in str(err.value)


@pytest.fixture
async def bare_dev_server(tmp_path: Path) -> AsyncIterator[Client]:
    """A dev server with no custom search attribute registered (like auto-setup's)."""
    port = free_port()
    argv = [
        str(TEMPORAL_BIN), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
        "--port", str(port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
        "--log-level", "warn",
    ]  # fmt: skip
    proc = ManagedProcess("temporal-bare", argv, tmp_path / "t.log", ports=[port],
                          ready_timeout=90, settle_s=1.0, port_race_retries=2)  # fmt: skip
    await proc.start()
    try:
        yield await Client.connect(f"127.0.0.1:{port}")
    finally:
        await proc.stop()


async def test_the_worker_registers_search_attributes_on_a_bare_server(
    bare_dev_server: Client,
) -> None:
    client = bare_dev_server
    before = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert not set(SEARCH_ATTRIBUTES) & set(before.custom_attributes)
    assert sorted(await ensure_search_attributes(client)) == sorted(SEARCH_ATTRIBUTES)
    assert await ensure_search_attributes(client) == []  # idempotent
    after = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(SEARCH_ATTRIBUTES) <= set(after.custom_attributes)


def test_the_commands_for_temporal_cloud_are_exact() -> None:
    text = search_attribute_commands("calls.a1b2c", ["CallStatus", "SilenceAlerts"])
    assert (
        "tcld namespace search-attributes add --namespace calls.a1b2c --search-attribute "
        '"CallStatus=Keyword" --search-attribute "SilenceAlerts=Int"'
    ) in text
    assert (
        "temporal operator search-attribute create --namespace calls.a1b2c "
        "--name CallStatus --type Keyword --name SilenceAlerts --type Int"
    ) in text
