"""`connect_temporal` over mTLS for real: a TLS front (ALPN h2, client certificate required,
a private CA) forwards to the dev server's plain gRPC port, as a TLS-terminating proxy or
Temporal's own TLS would. With TEMPORAL_TLS_CERT / KEY / CA the client connects and talks to
Temporal; without a client certificate the front refuses it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.testing import WorkflowEnvironment

from core.settings import load_settings
from core.temporal import TemporalUnavailable, connect_temporal

BASE = dict(
    DATABASE_URL="postgresql://x@h/db", MINIO_ENDPOINT="h:9000", MINIO_ACCESS_KEY="a",
    MINIO_SECRET_KEY="b", LIVEKIT_URL="ws://h", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s",
    API_TOKENS="t0123456789abcdef:admin", PAYLOAD_KEYS="",
)  # fmt: skip


def _issue(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
           *, server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
async def tls_front(
    temporal_dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[str, Path]]:
    """host:port of an mTLS front for the dev server, and the directory of ca/client PEMs."""
    ca = _issue("test-ca", None)
    _write(tmp_path / "ca", *ca)
    _write(tmp_path / "server", *_issue("localhost", ca, server=True))
    _write(tmp_path / "client", *_issue("callcenter-worker", ca))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    backend_host, backend_port = temporal_dev_env.client.service_client.config.target_host.split(
        ":"
    )

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(backend_host, int(backend_port))
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"localhost:{port}", tmp_path
    finally:
        server.close()


async def test_mtls_with_a_private_ca_connects(tls_front: tuple[str, Path]) -> None:
    address, pems = tls_front
    settings = load_settings(
        **BASE, TEMPORAL_ADDRESS=address, TEMPORAL_TLS_CA=str(pems / "ca.pem"),
        TEMPORAL_TLS_CERT=str(pems / "client.pem"), TEMPORAL_TLS_KEY=str(pems / "client.key"),
    )  # fmt: skip
    client = await connect_temporal(settings)
    assert await client.service_client.check_health()
    assert [w async for w in client.list_workflows("WorkflowId = 'none-such'")] == []


async def test_without_a_client_certificate_the_front_refuses(
    tls_front: tuple[str, Path],
) -> None:
    address, pems = tls_front
    settings = load_settings(**BASE, TEMPORAL_ADDRESS=address, TEMPORAL_TLS_CA=str(pems / "ca.pem"))
    with pytest.raises(TemporalUnavailable, match="tls on"):
        await asyncio.wait_for(connect_temporal(settings), 30)
