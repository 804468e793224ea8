"""AES-256-GCM payload codec: customer data (names, transcripts, grants) is encrypted at rest in
Temporal when `PAYLOAD_KEYS` is set.

Keys are `[(key_id, 32 bytes)]`, newest first: the newest encrypts, every one decrypts, so a key
is rotated by prepending a new one and dropping the old one only once nothing it encrypted is
still needed. Each encrypted payload carries its key id and a marker encoding in its metadata;
the data is `nonce (12 bytes) || ciphertext+tag` of the whole original `Payload` message.

With `require_encryption` (`PAYLOAD_REQUIRE_ENCRYPTION`, on by default when keys are set) a
payload that is not encrypted is refused, naming its position and encoding: a plaintext signal
or input injected by someone who can reach Temporal but has no key never reaches a workflow.
Turn it off only while histories written before the keys were set are still running.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
_NONCE = 12


class PayloadDecryptError(ValueError):
    """A payload cannot be decrypted: unknown key id, or tampered/corrupt data.

    A ValueError so that callers (e.g. the Web UI codec endpoint) can answer a 4xx.
    """


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload with the newest key; decrypts with the key its metadata names."""

    def __init__(
        self, keys: Sequence[tuple[str, bytes]], *, require_encryption: bool = False
    ) -> None:
        self.require_encryption = require_encryption
        if not keys:
            raise ValueError("EncryptionCodec needs at least one (key_id, key) pair")
        for kid, key in keys:
            if len(key) != 32:
                raise ValueError(f"payload key {kid!r} must be 32 bytes, got {len(key)}")
        self._encrypt_id = keys[0][0]
        self._ciphers = {kid: AESGCM(key) for kid, key in keys}

    @property
    def key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._encrypt_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._encrypt_id]
        aad = self._encrypt_id.encode()
        out = []
        for p in payloads:
            nonce = os.urandom(_NONCE)
            data = nonce + cipher.encrypt(nonce, p.SerializeToString(), aad)
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_META: self._encrypt_id.encode()},
                    data=data,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt; payloads that are not encrypted pass through unchanged unless
        `require_encryption`.

        Raises `PayloadDecryptError` for an unknown key id, data that fails authentication, or
        (with `require_encryption`) a payload that is not encrypted.
        """
        out = []
        for i, p in enumerate(payloads):
            if p.metadata.get("encoding") != ENCODING:
                if self.require_encryption:
                    encoding = p.metadata.get("encoding", b"").decode(errors="replace")[:64]
                    raise PayloadDecryptError(
                        f"payload {i + 1} of {len(payloads)} is not encrypted (encoding "
                        f"{encoding or 'none'!r}) and PAYLOAD_REQUIRE_ENCRYPTION refuses it"
                    )
                out.append(p)
                continue
            kid = p.metadata.get(KEY_ID_META, b"").decode(errors="replace")
            cipher = self._ciphers.get(kid)
            if cipher is None:
                raise PayloadDecryptError(
                    f"payload encrypted with key id {kid!r}, which is not among the configured "
                    f"PAYLOAD_KEYS ({', '.join(sorted(self._ciphers))})"
                )
            if len(p.data) <= _NONCE:
                raise PayloadDecryptError(f"encrypted payload (key id {kid!r}) is truncated")
            try:
                plain = cipher.decrypt(p.data[:_NONCE], p.data[_NONCE:], kid.encode())
            except InvalidTag:
                raise PayloadDecryptError(
                    f"encrypted payload (key id {kid!r}) failed authentication: "
                    "tampered with, or encrypted with a different key of the same id"
                ) from None
            out.append(Payload.FromString(plain))
        return out


def codec_from_settings(
    settings: Any, *, require_encryption: bool | None = None
) -> EncryptionCodec | None:
    """The codec for `settings.payload_keys`, or None when encryption is off (no keys).
    `require_encryption` defaults to `settings.require_encryption`."""
    keys = settings.payload_keys
    if not keys:
        return None
    if require_encryption is None:
        require_encryption = settings.require_encryption
    return EncryptionCodec(keys, require_encryption=require_encryption)
