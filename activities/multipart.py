"""S3 multipart upload fed from asyncio: parts filled in a fixed pool of reusable buffers and
uploaded by the (synchronous) minio client in threads, a bounded number at a time.

Uses minio's low-level multipart calls (`_create_multipart_upload`, `_upload_part`,
`_abort_multipart_upload`, and `_execute` for CompleteMultipartUpload, whose helper cannot name
the parts' checksums; minio as locked, covered by the tests) because `put_object` cannot be told
to abandon an upload at the end, which the "same bytes: no second write" rule of the recordings
needs. Every part names its SHA-256 (`x-amz-checksum-sha256`, the upload created with
`x-amz-checksum-algorithm: SHA256`), so the store refuses a part damaged on the way.

Cancellation: a blocking minio call cannot be recalled once its thread runs, and a cancelled
`asyncio.to_thread` returns at once while the thread goes on (and may still write). So every
call here runs through `in_thread`, and `abort` waits for parts still uploading: a cancelled
caller returns only when no byte of it can still reach the bucket (what erasure relies on).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error
from minio.helpers import md5sum_hash
from minio.xml import Element, SubElement, getbytes
from temporalio.exceptions import ApplicationError

from activities import types as act

MiB = 1024 * 1024
MAX_IN_FLIGHT = 2  # parts being uploaded while the next one fills
# S3 error codes that say the request is refused for good (credentials, policy, the bucket's
# name): retrying cannot succeed, so they are not retried (a loop that never ends otherwise).
REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "SignatureDoesNotMatch",
    }
)

T = TypeVar("T")
# S3 additional checksums: each part (and a single PUT) names its SHA-256, so the store itself
# verifies the bytes it received and refuses a corrupted body (S3, MinIO).
CHECKSUM_ALGORITHM = "x-amz-checksum-algorithm"
CHECKSUM_SHA256 = "x-amz-checksum-sha256"


def sha256_b64(data: bytes | bytearray | memoryview) -> str:
    """The value of an `x-amz-checksum-sha256` header for `data`."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def storage_unavailable(what: str, exc: BaseException) -> ApplicationError:
    return ApplicationError(
        f"{what}: object storage failed ({type(exc).__name__}: {exc})",
        type=act.ERR_STORAGE_UNAVAILABLE,
    )


def storage_error(what: str, exc: BaseException, bucket: str, key: str) -> ApplicationError:
    """A failed S3 request as an ApplicationError: StorageRefused (non-retryable) when S3
    refused it for good, naming the bucket, the key and S3's error code only (an S3 error
    body may quote the access key id); else the retryable StorageUnavailable."""
    if isinstance(exc, S3Error) and exc.code in REFUSED_CODES:
        return ApplicationError(
            f"{what} s3://{bucket}/{key}: refused by object storage ({exc.code})",
            type=act.ERR_STORAGE_REFUSED,
            non_retryable=True,
        )
    return storage_unavailable(what, exc)


def s3_call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) minio call; its failures become retryable StorageUnavailable."""
    try:
        return fn(*args, **kwargs)
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise storage_unavailable(what, exc) from exc


async def settle(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even if the caller is cancelled meanwhile; then re-raise that
    cancellation (its result is dropped). Further cancellations while waiting are absorbed."""
    task = asyncio.ensure_future(aw)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller reports
        raise cancelled
    return task.result()


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread`, except that a cancelled caller first waits for the thread to end
    (a request it has sent may still write: the caller must not say it stopped before)."""
    return await settle(asyncio.to_thread(fn, *args, **kwargs))


class MultipartSink:
    """Parts to an S3 multipart upload, `MAX_IN_FLIGHT` at a time, uploaded in threads.

    Parts are filled into a fixed pool of `MAX_IN_FLIGHT + 1` reusable buffers (allocated once:
    no per-part allocation for the allocator to keep). A file smaller than one part is written
    with one PUT at the end instead (with its final metadata). Nothing is visible in the bucket
    before `complete`; `abort` discards the parts.
    """

    def __init__(
        self,
        minio: Minio,
        bucket: str,
        key: str,
        part_size: int,
        metadata: dict[str, str],
        content_type: str = "application/octet-stream",
    ) -> None:
        self.minio, self.bucket, self.key, self.part_size = minio, bucket, key, part_size
        self.headers = {"Content-Type": content_type, CHECKSUM_ALGORITHM: "SHA256"}
        self.headers.update({f"x-amz-meta-{k}": v for k, v in metadata.items()})
        self.upload_id = ""
        self.parts: list[Part] = []
        self.checksums: dict[int, str] = {}  # part number -> its SHA-256 (base64), as sent
        self._next_part = 1
        self._buf: bytearray | None = None  # the part being filled
        self._filled = 0
        self._free: list[bytearray] = []
        self._allocated = 0
        self._in_flight: dict[asyncio.Future[Part], bytearray] = {}

    async def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._buf is None:
                self._buf, self._filled = await self._take(), 0
            n = min(len(view), self.part_size - self._filled)
            self._buf[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == self.part_size:
                buf, self._buf = self._buf, None
                await self._send(buf, self.part_size)

    async def _take(self) -> bytearray:
        while not self._free and self._allocated > MAX_IN_FLIGHT:
            await self._reap(asyncio.FIRST_COMPLETED)
        if self._free:
            return self._free.pop()
        self._allocated += 1
        return bytearray(self.part_size)

    async def _send(self, buf: bytearray, length: int) -> None:
        if not self.upload_id:
            # Set by the thread itself, so that an `abort` after a cancellation knows it.
            await in_thread(self._create)
        number, self._next_part = self._next_part, self._next_part + 1
        data = buf if length == len(buf) else memoryview(buf)[:length]
        fut = asyncio.ensure_future(asyncio.to_thread(self._upload, number, data))
        self._in_flight[fut] = buf

    def _create(self) -> None:
        self.upload_id = s3_call(
            "create multipart upload",
            self.minio._create_multipart_upload,
            self.bucket,
            self.key,
            dict(self.headers),
        )

    def _upload(self, number: int, data: bytearray | memoryview) -> Part:
        checksum = sha256_b64(data)
        etag = s3_call(
            f"upload part {number}",
            self.minio._upload_part,
            self.bucket,
            self.key,
            data,
            {CHECKSUM_SHA256: checksum},  # the store refuses a part whose bytes differ
            self.upload_id,
            number,
        )
        self.checksums[number] = checksum
        return Part(number, etag)

    async def _reap(self, when: str) -> None:
        done, _ = await asyncio.wait(self._in_flight, return_when=when)
        failed = None
        for fut in done:
            self._free.append(self._in_flight.pop(fut))
            if fut.exception() is not None:
                failed = failed or fut.exception()
            else:
                self.parts.append(fut.result())
        if failed is not None:
            raise failed

    async def finish(self) -> bytes | None:
        """Upload the rest; returns the whole file instead when it never filled a part."""
        buf, filled, self._buf = self._buf, self._filled, None
        if not self.upload_id:
            return bytes(buf[:filled]) if buf is not None else b""
        if buf is not None and filled:
            await self._send(buf, filled)
        if self._in_flight:
            await self._reap(asyncio.ALL_COMPLETED)
        return None

    def stored_checksum(self, whole: bytes | None) -> str:
        """The `x-amz-checksum-sha256` S3 reports for what was written: of the body of a single
        PUT (`whole`), or of a multipart upload the SHA-256 of its parts' digests, `-<parts>`."""
        if whole is not None:
            return sha256_b64(whole)
        digests = b"".join(base64.b64decode(self.checksums[n]) for n in sorted(self.checksums))
        return f"{sha256_b64(digests)}-{len(self.checksums)}"

    async def complete(self) -> None:
        parts = sorted(self.parts, key=lambda p: p.part_number)
        await in_thread(s3_call, "complete multipart upload", self._complete, parts)
        self.upload_id = ""

    def _complete(self, parts: list[Part]) -> None:
        """CompleteMultipartUpload naming each part's SHA-256 (minio's own call cannot: an
        upload created with a checksum algorithm must list them, S3 and MinIO refuse it else)."""
        element = Element("CompleteMultipartUpload")
        for part in parts:
            tag = SubElement(element, "Part")
            SubElement(tag, "PartNumber", str(part.part_number))
            SubElement(tag, "ETag", f'"{part.etag}"')
            SubElement(tag, "ChecksumSHA256", self.checksums[part.part_number])
        body = getbytes(element)
        headers = {"Content-Type": "application/xml", "Content-MD5": md5sum_hash(body) or ""}
        self.minio._execute(
            "POST",
            self.bucket,
            self.key,
            body=body,
            headers=headers,  # type: ignore[arg-type]
            query_params={"uploadId": self.upload_id},
        ).close()

    async def abort(self) -> None:
        """Discard everything written (safe to call at any time, more than once). Parts still
        uploading are waited for first (their threads cannot be stopped, and a part landing
        after the abort would outlive it); a cancellation meanwhile is re-raised at the end."""
        await settle(self._abort())

    async def _abort(self) -> None:
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        for fut in self._in_flight:  # their failures do not matter any more: retrieved here
            if not fut.cancelled():
                fut.exception()
        self._in_flight, self._free, self._allocated, self._buf = {}, [], 0, None
        self.parts, self._next_part, self.checksums = [], 1, {}
        upload_id, self.upload_id = self.upload_id, ""
        if upload_id:
            await asyncio.to_thread(abort_upload, self.minio, self.bucket, self.key, upload_id)


def abort_upload(minio: Minio, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; one already gone is fine (the lifecycle rule is the backstop)."""
    try:
        minio._abort_multipart_upload(bucket, key, upload_id)
    except S3Error as exc:
        if exc.code != "NoSuchUpload":
            raise storage_unavailable("abort multipart upload", exc) from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise storage_unavailable("abort multipart upload", exc) from exc
