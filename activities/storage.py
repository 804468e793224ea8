"""Recording storage: stream an egress file into the recordings bucket, verified, idempotently.

`download_and_store_recording` never holds a whole file: it downloads with aiohttp, hashes
(SHA-256) on the fly and hands fixed-size parts to an S3 multipart upload running in threads
(the minio client is synchronous, see `activities.multipart`), a bounded number at a time, so
memory stays near `(MAX_IN_FLIGHT + 1) * PART_SIZE` (24 MiB) whatever the file's size. A connection cut mid-file is
resumed with a Range request (or the transfer restarts cleanly when the source cannot resume);
nothing is visible in the bucket until the upload completes. The object carries its call id,
room and egress id as metadata (known when the upload starts) and its SHA-256 and duration as
object tags (known only at the end: S3 metadata cannot change without rewriting the object,
tags can); a key that already holds the same bytes is left untouched (no second write).

The source is read by bucket and key with the worker's S3 credentials (a presigned GET it signs
itself) when the egress location names an S3 endpoint the product knows (see
`activities.egress_location`), or `inp.object_key` in the staging bucket when set; any other
http(s) location is fetched only from a host in `source_hosts` (RECORDING_SOURCE_HOSTS).

Integrity is checked against the source, not against anything the pipeline wrote itself: the
bytes read from staging must be the staged object as the store describes it (its size; its ETag,
the MD5 or for a multipart upload the MD5 of its parts' MD5s, the first part's size asked with
`HEAD ?partNumber=1`; its full-object SHA-256 checksum when it has one), else
RecordingSourceMismatch (retried: read again). Our upload names each part's SHA-256 (S3
additional checksums, `x-amz-checksum-sha256`), so the store refuses a body damaged on its way;
the stored object's size and the checksum the store reports must then match what was read.
Once verified, the staging object is deleted, unless `staging_keep_days` leaves it to the
staging bucket's lifecycle rule.

An erased call (a row in `erasures`, when the activities have a database pool) is refused,
non-retryable `CallErased`, before anything is read and again right before the object becomes
visible: an ops retry that raced the erasure must not bring the recording back.

Cancelled (the pipeline stopped for an erasure), the activity returns only once nothing of it
can still be written: every minio call runs through `activities.multipart.in_thread` (a
cancelled caller waits for its thread) and the multipart upload is aborted after its last part
has landed. Erasure deletes the objects after that, so no copy outlives it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import hashlib
import io
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter, Tags
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    Expiration,
    LifecycleConfig,
    Rule,
)
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import types as act
from activities.egress_location import LocationError, endpoint_host, parse_egress_location
from activities.multipart import (
    CHECKSUM_SHA256,
    MiB,
    MultipartSink,
    abort_upload,
    in_thread,
    s3_call,
    settle,
    sha256_b64,
    storage_error,
    storage_unavailable,
)
from core import models as m
from core.log import get_logger

log = get_logger("activities.storage")

PART_SIZE = 8 * MiB  # S3 parts are >= 5 MiB (but the last); 10,000 parts -> files up to 80 GB
CHUNK = 256 * 1024
MAX_RESUMES = 8  # cut connections survived within one attempt (then Temporal retries)
HEARTBEAT_EVERY_S = 1.0
# Also how soon a cancellation (erasure) is seen during a phase without progress beats (a
# PUT in flight, a backoff); the SDK throttles what it sends (worker.HEARTBEAT_THROTTLE).
BACKGROUND_BEAT_S = 2.0
MAX_URL_TTL = timedelta(minutes=15)
RETENTION_RULE_ID = "recordings-retention"
STAGING_RULE_ID = "egress-staging-expiry"
SOURCE_URL_TTL = timedelta(hours=1)  # a presigned read of the staging object, per attempt
# The retention schedule (ops/retention.py) erases a call, its rows and its recording after
# RECORDING_RETENTION_DAYS; the lifecycle rule expires objects a day later, as a backstop for
# an object left without its call, so it never removes a recording the call still shows.
LIFECYCLE_GRACE_DAYS = 1
CONTENT_TYPE = "audio/ogg"
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header + segment table + body: the longest Ogg page
_NOT_FOUND = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")
_SSE_HEADERS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
)
_UNUSABLE_STATUS = frozenset({400, 401, 403, 404, 410})


def incomplete_recording(duration_s: float, call_duration_s: float) -> bool:
    """True when the recording is much shorter than the call it recorded (more than 10% or 5 s,
    whichever is larger, missing); never for a call of unknown length."""
    if call_duration_s <= 0:
        return False
    return call_duration_s - duration_s > max(5.0, 0.1 * call_duration_s)


def ogg_opus_duration(head: bytes, tail: bytes) -> float | None:
    """Duration of an Ogg/Opus file from its first bytes (OpusHead's pre-skip) and its last
    bytes (the final page's granule position, 48 kHz); None when it cannot be told."""
    i = head.find(b"OpusHead")
    if i < 0 or len(head) < i + 12:
        return None
    pre_skip = int.from_bytes(head[i + 10 : i + 12], "little")
    pos = len(tail)
    while (pos := tail.rfind(b"OggS", 0, pos)) >= 0:
        if pos + 27 > len(tail) or tail[pos + 4] != 0:
            continue
        nseg = tail[pos + 26]
        if pos + 27 + nseg > len(tail):
            continue
        # The final page is the one that ends exactly where the file does.
        if pos + 27 + nseg + sum(tail[pos + 27 : pos + 27 + nseg]) != len(tail):
            continue
        granule = int.from_bytes(tail[pos + 6 : pos + 14], "little", signed=True)
        return max(0, granule - pre_skip) / 48000 if granule >= 0 else None
    return None


@dataclass
class StoredObject:
    size: int
    sha256: str
    egress_id: str
    duration_s: float


@dataclass
class _Download:
    """What the transfer has seen so far (reset when it restarts from byte 0)."""

    size: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    head: bytes = b""
    tail: deque[bytes] = field(default_factory=deque)
    tail_len: int = 0
    total: int = 0  # what the source says the whole file is (0: unknown)
    etag: str = ""
    # MD5s as S3 computes an ETag: of the whole, and of each `part_size` part (a multipart one)
    md5: Any = field(default_factory=hashlib.md5)
    part_size: int = 0
    part_md5s: list[bytes] = field(default_factory=list)
    part: Any = field(default_factory=hashlib.md5)
    in_part: int = 0

    def feed(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.md5.update(chunk)
        if self.part_size:
            view = memoryview(chunk)
            while view:
                n = min(len(view), self.part_size - self.in_part)
                self.part.update(view[:n])
                self.in_part += n
                view = view[n:]
                if self.in_part == self.part_size:
                    self.part_md5s.append(self.part.digest())
                    self.part, self.in_part = hashlib.md5(), 0
        self.size += len(chunk)
        if len(self.head) < 512:
            self.head += chunk[: 512 - len(self.head)]
        self.tail.append(chunk)
        self.tail_len += len(chunk)
        while self.tail_len - len(self.tail[0]) >= _OGG_MAX_PAGE:
            self.tail_len -= len(self.tail.popleft())

    def duration(self) -> float | None:
        return ogg_opus_duration(self.head, b"".join(self.tail))

    def s3_etag(self, parts: int) -> str:
        """The ETag S3 gives these bytes: their MD5, or for `parts` > 0 uploaded parts the
        MD5 of the parts' MD5s and `-<parts>`."""
        if not parts:
            return self.md5.hexdigest()
        digests = self.part_md5s + ([self.part.digest()] if self.in_part else [])
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


@dataclass(frozen=True)
class StagedObject:
    """What the store says the staged object (Egress's own upload) is: the read is checked
    against it, not against anything the pipeline wrote itself."""

    size: int
    etag: str  # quotes stripped; "<md5>" or, multipart, "<md5 of part md5s>-<parts>"
    part_size: int = 0  # the size of part 1 when the ETag is a multipart one
    sha256: str = ""  # the full-object x-amz-checksum-sha256 (base64), when the store has one
    # Server-side encrypted (SSE-KMS, SSE-C; MinIO's SSE-S3 too): the ETag is then no MD5 of
    # the bytes, so only the size and a checksum can be compared.
    encrypted: bool = False

    @property
    def parts(self) -> int:
        _, _, n = self.etag.partition("-")
        return int(n) if n.isdigit() else 0

    def mismatch(self, got: _Download) -> str:
        """Why the bytes read are not this object ("" when they are)."""
        if got.size != self.size:
            return f"read {got.size} bytes, the store holds {self.size}"
        if self.sha256 and self.sha256 != base64.b64encode(got.hasher.digest()).decode():
            return "the SHA-256 read differs from the store's checksum"
        plain = len(self.etag) == 32 and not self.parts
        md5_etag = not self.encrypted and (plain or (self.parts and self.part_size))
        if md5_etag and got.s3_etag(self.parts) != self.etag:
            return "the MD5 read differs from the store's ETag"
        return ""


@dataclass(frozen=True)
class RecordingSource:
    """Where one attempt reads the egress file: `staging` (bucket, key) when it is an object
    of our own S3 (deleted once stored), else only an allowed http(s) URL."""

    url: str
    staging: tuple[str, str] | None


class StorageActivities:
    """Built once per worker with a minio client and the recordings bucket.

    `http_session_factory` makes the aiohttp session a download uses (tests pass their own);
    `retention_days` is the bucket's lifecycle expiration for recordings. `staging_bucket`
    is where Egress uploads (EGRESS_BUCKET); `s3_endpoints` are other host[:port] names of
    the same S3 (e.g. the one Egress was told); `source_hosts` may serve http(s) locations;
    `staging_keep_days` > 0 keeps staging objects for a lifecycle rule to expire. With a
    `pool` (asyncpg), a call recorded in `erasures` is never stored again.
    """

    def __init__(
        self,
        minio: Minio,
        bucket: str,
        http_session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        retention_days: int = 365,
        *,
        part_size: int = PART_SIZE,
        staging_bucket: str = "egress",
        s3_endpoints: tuple[str, ...] = (),
        source_hosts: frozenset[str] = frozenset(),
        staging_keep_days: int = 0,
        pool: Any = None,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("part_size must be at least 5 MiB (S3's minimum part size)")
        self.minio = minio
        self.bucket = bucket
        self.retention_days = retention_days
        self.part_size = part_size
        self.staging_bucket = staging_bucket
        self.s3_endpoints = tuple(e for e in s3_endpoints if e)
        self.source_hosts = frozenset(h.lower() for h in source_hosts)
        self.staging_keep_days = staging_keep_days
        self.pool = pool
        self._session_factory = http_session_factory or _default_session

    # --- bucket and links (plain methods, for the worker's start-up and the API) -------------

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and set its retention rule (blocking; run in a thread).

        Rules of other ids are kept. Incomplete multipart uploads are cleaned after a day.
        """
        self._ensure_rule(
            self.bucket, RETENTION_RULE_ID, self.retention_days + LIFECYCLE_GRACE_DAYS
        )
        log.info("bucket_ready", bucket=self.bucket, retention_days=self.retention_days)

    def ensure_staging_bucket(self) -> None:
        """Create the staging bucket Egress uploads to (blocking). With `staging_keep_days`,
        its objects expire after that many days (kept for inspection instead of deleted)."""
        self._ensure_rule(self.staging_bucket, STAGING_RULE_ID, self.staging_keep_days or None)
        log.info(
            "staging_bucket_ready", bucket=self.staging_bucket, keep_days=self.staging_keep_days
        )

    def _ensure_rule(self, bucket: str, rule_id: str, days: int | None) -> None:
        if not self.minio.bucket_exists(bucket):
            try:
                self.minio.make_bucket(bucket)
            except S3Error as exc:  # another worker created it meanwhile
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        current = self.minio.get_bucket_lifecycle(bucket)
        others = [r for r in (current.rules if current else []) if r.rule_id != rule_id]
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix="conversations/"),
            rule_id=rule_id,
            expiration=Expiration(days=days) if days else None,
            abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                days_after_initiation=1
            ),
        )
        self.minio.set_bucket_lifecycle(bucket, LifecycleConfig([*others, rule]))

    def presigned_recording_url(self, key: str, expires: timedelta = MAX_URL_TTL) -> str:
        """A GET link to `key` valid for `expires` (at most 15 minutes; local computation)."""
        if not timedelta(0) < expires <= MAX_URL_TTL:
            raise ValueError("expires must be more than 0 and at most 15 minutes")
        return self.minio.presigned_get_object(self.bucket, key, expires=expires)

    def stored_object(self, key: str) -> StoredObject | None:
        """What the bucket holds at `key` (None: nothing). Blocking."""
        try:
            stat = self.minio.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise storage_unavailable("stat object", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise storage_unavailable("stat object", exc) from exc
        tags: dict[str, str] = dict(
            s3_call("get object tags", self.minio.get_object_tags, self.bucket, key) or {}
        )
        try:
            duration = float(tags.get("duration-s") or 0)
        except ValueError:
            duration = 0.0
        return StoredObject(
            size=int(stat.size or 0),
            sha256=tags.get("sha256", ""),
            egress_id=(stat.metadata or {}).get("x-amz-meta-egress-id", ""),
            duration_s=duration,
        )

    # --- the activity ---------------------------------------------------------------------

    @activity.defn(name=act.DOWNLOAD_AND_STORE_RECORDING)
    async def download_and_store_recording(self, inp: m.RecordingInput) -> m.RecordingResult:
        """`_download_and_store`, heartbeating from a background task the whole time (backoff,
        back-pressure, completing and tagging included), not only when bytes arrive."""
        async with heartbeating(BACKGROUND_BEAT_S):
            return await self._download_and_store(inp)

    @activity.defn(name=act.FIND_STAGED_RECORDING)
    async def find_staged_recording(self, q: act.StagedRecordingQuery) -> m.RecordingFile | None:
        """The file an egress was told to write at `q.object_key` in the staging bucket, when
        it is there (the egress's end went unseen and LiveKit no longer knows it); else None."""
        if not m.is_call_id(q.call_id) or not q.object_key.startswith(
            f"conversations/{q.call_id}/"
        ):
            raise ApplicationError(
                "find_staged_recording needs a call id and that call's key",
                type=act.ERR_INVALID_INPUT,
                non_retryable=True,
            )
        try:
            stat = await asyncio.to_thread(
                self.minio.stat_object, self.staging_bucket, q.object_key
            )
        except S3Error as exc:
            if exc.code in _NOT_FOUND or exc.code == "NoSuchBucket":
                log.info("staged_recording_absent", call_id=q.call_id, key=q.object_key)
                return None
            raise storage_unavailable("stat staged object", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise storage_unavailable("stat staged object", exc) from exc
        log.info("staged_recording_found", call_id=q.call_id, key=q.object_key, bytes=stat.size)
        return m.RecordingFile(
            filename=q.object_key,
            location=self._staged_location(q.object_key),
            size=int(stat.size or 0),
            duration_s=0.0,  # unknown until read: the store measures it
        )

    @activity.defn(name=act.DELETE_RECORDING_SEGMENTS)
    async def delete_recording_segments(self, req: act.SegmentsToDelete) -> int:
        """Delete a call's segments from the staging and the recordings bucket (consent
        withdrawn, policy delete); a missing object is fine. Returns how many keys were asked.
        A refusal S3 will repeat (AccessDenied) is StorageRefused, not retried: the call's
        workflow records `delete_failed` and finishes instead of retrying for ever."""
        prefix = f"conversations/{req.call_id}/"
        if not m.is_call_id(req.call_id) or not all(k.startswith(prefix) for k in req.object_keys):
            raise ApplicationError(
                "delete_recording_segments needs a call id and that call's keys",
                type=act.ERR_INVALID_INPUT,
                non_retryable=True,
            )
        for bucket in (self.staging_bucket, self.bucket):
            for key in req.object_keys:
                try:
                    await asyncio.to_thread(self.minio.remove_object, bucket, key)
                except S3Error as exc:
                    if exc.code in (*_NOT_FOUND, "NoSuchBucket"):
                        continue
                    log.warning(
                        "recording_segment_delete_failed",
                        call_id=req.call_id,
                        bucket=bucket,
                        key=key,
                        code=exc.code,
                    )
                    raise storage_error("remove object", exc, bucket, key) from exc
                except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                    raise storage_unavailable("remove object", exc) from exc
        log.info("recording_segments_deleted", call_id=req.call_id, keys=len(req.object_keys))
        return len(req.object_keys)

    def _staged_location(self, key: str) -> str:
        # Path style on our own endpoint: one of the location forms Egress reports.
        base = self.minio._base_url  # noqa: SLF001 - the endpoint the client was built with
        scheme = "https" if base.is_https else "http"
        return f"{scheme}://{base.host}/{self.staging_bucket}/{key}"

    async def _download_and_store(self, inp: m.RecordingInput) -> m.RecordingResult:
        """Stream the egress file (see `recording_source`) to `stored_key(inp)`
        (`conversations/<call_id>.ogg` when no object_key), then delete the staging copy.

        Errors: RecordingSourceUnusable (non-retryable: 4xx such as 404, not an Ogg file),
        RecordingSourceUnavailable (5xx, connection trouble beyond `MAX_RESUMES` resumes),
        RecordingSizeMismatch (the bytes do not add up to `expected_size`: the source may have
        been cut), StorageUnavailable (the bucket). All but the first are retried by Temporal.
        """
        if not m.is_call_id(inp.call_id) or not (inp.location or inp.object_key):
            raise ApplicationError(
                "download_and_store_recording needs a call id and a location or object_key",
                type=act.ERR_INVALID_INPUT,
                non_retryable=True,
            )
        await self._refuse_if_erased(inp)
        source = self.recording_source(inp)
        key = self.stored_key(inp, source)
        await self._abort_previous_attempt(key)
        existing = await in_thread(self.stored_object, key)
        if (
            existing is not None
            and existing.sha256
            and existing.egress_id == inp.egress_id
            and (not inp.expected_size or existing.size == inp.expected_size)
        ):
            log.info("recording_already_stored", call_id=inp.call_id, key=key, checked="metadata")
            await self._drop_staging(inp, source, key)
            return self._result(inp, key, existing.size, existing.sha256, existing.duration_s, True)

        metadata = {"call-id": inp.call_id, "room": inp.room_name, "egress-id": inp.egress_id}
        sink = MultipartSink(self.minio, self.bucket, key, self.part_size, metadata, CONTENT_TYPE)
        started = time.monotonic()
        try:
            staged = await in_thread(self._stat_staged, source) if source.staging else None
            async with self._session_factory() as http:
                got = await self._transfer(
                    http, inp, source.url, sink, staged.part_size if staged else 0
                )
            why = staged.mismatch(got) if staged else ""
            if why:
                log.warning("recording_source_mismatch", call_id=inp.call_id, key=key, why=why)
                raise ApplicationError(
                    f"recording of call {inp.call_id}: {why} (staged object)",
                    type=act.ERR_SOURCE_MISMATCH,
                )
            if inp.expected_size and got.size != inp.expected_size:
                raise ApplicationError(
                    f"recording of call {inp.call_id}: got {got.size} bytes, egress reported "
                    f"{inp.expected_size}",
                    type=act.ERR_SIZE_MISMATCH,
                )
            whole = await sink.finish()
            sha256 = got.hasher.hexdigest()
            duration = got.duration()
            if duration is None:
                duration = inp.expected_duration_s
            if existing is not None and existing.sha256 == sha256 and existing.size == got.size:
                await sink.abort()
                log.info("recording_already_stored", call_id=inp.call_id, key=key, checked="sha256")
                await self._drop_staging(inp, source, key)
                return self._result(inp, key, got.size, sha256, duration, True)
            tags = Tags.new_object_tags()
            tags.update({"sha256": sha256, "duration-s": f"{duration:.3f}"})
            await self._refuse_if_erased(inp)  # the erasure may have finished meanwhile
            await self._write(key, sink, whole, metadata, tags)
        except BaseException as exc:
            try:
                await settle(sink.abort())
            except ApplicationError:
                if not isinstance(exc, asyncio.CancelledError):
                    raise
                # Nothing can be written any more; its parts go with the lifecycle rule.
                log.warning("recording_abort_failed", call_id=inp.call_id, key=key)
            raise
        await self._verify_stored(inp, key, got.size, sha256, sink.stored_checksum(whole))
        await self._drop_staging(inp, source, key)
        elapsed = time.monotonic() - started
        log.info(
            "recording_stored",
            call_id=inp.call_id,
            key=key,
            bytes=got.size,
            duration_s=round(duration, 3),
            seconds=round(elapsed, 2),
        )
        return self._result(inp, key, got.size, sha256, duration, False)

    # --- the source and the staging copy ---------------------------------------------------

    def stored_key(self, inp: m.RecordingInput, source: RecordingSource | None = None) -> str:
        """The recordings-bucket key: `inp.object_key` (a segment's own key) when set, else
        the staging key when it is one of this call's, else `conversations/<call_id>.ogg`."""
        if inp.object_key:
            if not _is_call_key(inp.call_id, inp.object_key):
                raise ApplicationError(
                    f"object_key of call {inp.call_id} must be under conversations/{inp.call_id}/",
                    type=act.ERR_INVALID_INPUT,
                    non_retryable=True,
                )
            return inp.object_key
        if source is not None and source.staging and _is_call_key(inp.call_id, source.staging[1]):
            return source.staging[1]
        return m.recording_object_key(inp.call_id)

    def recording_source(self, inp: m.RecordingInput) -> RecordingSource:
        """Where this attempt reads the file (the URL is presigned here, never logged).

        An S3 location on our own endpoint wins (it says where Egress really wrote, a storage
        prefix or backup bucket included); else `object_key` in the staging bucket; else an
        http(s) location whose host is allowed. An S3 location must name one of this call's
        keys (after any storage prefix): a pipeline never copies, and then deletes, another
        call's object. Raises a non-retryable ApplicationError.
        """
        obj = None
        if inp.location:
            try:
                obj = parse_egress_location(inp.location, endpoints=self.s3_endpoints)
            except LocationError as exc:
                if not inp.object_key:
                    raise ApplicationError(
                        f"recording of call {inp.call_id}: {exc}",
                        type=act.ERR_INVALID_INPUT,
                        non_retryable=True,
                    ) from None
        if obj is not None and obj.bucket and self._is_own_s3(obj.host):
            if not _is_call_source_key(inp.call_id, obj.key):
                # Else whoever can start a pipeline could copy, then delete, another's object.
                log.warning("recording_source_refused", call_id=inp.call_id, bucket=obj.bucket)
                raise ApplicationError(
                    f"recording of call {inp.call_id}: the location is not under "
                    f"conversations/{inp.call_id}/",
                    type=act.ERR_SOURCE_UNUSABLE,
                    non_retryable=True,
                )
            return self._staging_source(obj.bucket, obj.key)
        if inp.object_key:
            return self._staging_source(self.staging_bucket, inp.object_key)
        assert obj is not None
        if obj.host in self.source_hosts:
            return RecordingSource(inp.location, None)
        log.warning("recording_source_refused", call_id=inp.call_id, host=obj.host)
        raise ApplicationError(
            f"recording of call {inp.call_id}: host {obj.host} is neither our S3 endpoint nor "
            "in RECORDING_SOURCE_HOSTS",
            type=act.ERR_SOURCE_UNUSABLE,
            non_retryable=True,
        )

    def _stat_staged(self, source: RecordingSource) -> StagedObject:
        """What the store says the staged object is (blocking): size, ETag, the size of its
        first part when multipart (HEAD ?partNumber=1), its full-object SHA-256 if it has one."""
        assert source.staging is not None
        bucket, key = source.staging
        try:
            stat = self.minio.stat_object(
                bucket, key, extra_headers={"x-amz-checksum-mode": "ENABLED"}
            )
        except S3Error as exc:
            if exc.code in (*_NOT_FOUND, "NoSuchBucket"):
                # As the read itself would answer: 404, nothing to store (ops decide).
                raise ApplicationError(
                    f"recording of call {_call_of(key)}: the source answered HTTP 404",
                    type=act.ERR_SOURCE_UNUSABLE,
                    non_retryable=True,
                ) from None
            raise storage_unavailable("stat staged object", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise storage_unavailable("stat staged object", exc) from exc
        headers = stat.metadata or {}
        checksum = str(headers.get("x-amz-checksum-sha256") or "")
        etag = (stat.etag or "").strip('"')
        kind = headers.get("x-amz-checksum-type")
        # A multipart upload's checksum is composite (of its parts') unless said FULL_OBJECT.
        full = "-" not in checksum and (kind == "FULL_OBJECT" or (kind is None and "-" not in etag))
        staged = StagedObject(
            size=int(stat.size or 0),
            etag=etag,
            sha256=checksum if full else "",
            encrypted=any(h in headers for h in _SSE_HEADERS),
        )
        if staged.parts > 1:
            first = s3_call(
                "stat staged part",
                self.minio.stat_object,
                bucket,
                key,
                extra_query_params={"partNumber": "1"},
            )
            staged = dataclasses.replace(staged, part_size=int(first.size or 0))
        elif staged.parts == 1:
            staged = dataclasses.replace(staged, part_size=staged.size)
        return staged

    def _is_own_s3(self, host: str) -> bool:
        own = {endpoint_host(e) for e in self.s3_endpoints}
        if host in own:
            return True
        aws = host.endswith("amazonaws.com")
        return aws and any(h.endswith("amazonaws.com") for h in own)

    def _staging_source(self, bucket: str, key: str) -> RecordingSource:
        url = self.minio.presigned_get_object(bucket, key, expires=SOURCE_URL_TTL)
        return RecordingSource(url, (bucket, key))

    async def _verify_stored(
        self, inp: m.RecordingInput, key: str, size: int, sha: str, checksum: str
    ) -> None:
        """The object now at `key` is what was read before staging goes: its size, and the
        SHA-256 checksum the store computed itself when it reports one (else our tag)."""
        stored = await in_thread(self.stored_object, key)
        reported = await in_thread(self._stored_checksum, key) if stored is not None else ""
        if (
            stored is None
            or stored.size != size
            or stored.sha256 != sha
            # A composite checksum is "<value>-<parts>" (S3) or only its value (some stores).
            or (reported and reported.split("-")[0] != checksum.split("-")[0])
        ):
            raise ApplicationError(
                f"recording of call {inp.call_id}: the stored object at {key} does not match "
                "what was read",
                type=act.ERR_STORAGE_UNAVAILABLE,
            )

    def _stored_checksum(self, key: str) -> str:
        """The `x-amz-checksum-sha256` the store reports for `key` ("" when it has none)."""
        stat = s3_call(
            "stat object",
            self.minio.stat_object,
            self.bucket,
            key,
            extra_headers={"x-amz-checksum-mode": "ENABLED"},
        )
        return str((stat.metadata or {}).get(CHECKSUM_SHA256) or "")

    async def _drop_staging(self, inp: m.RecordingInput, source: RecordingSource, key: str) -> None:
        """Delete the staging copy once stored (unless kept for its lifecycle rule)."""
        if source.staging is None or self.staging_keep_days:
            return
        bucket, skey = source.staging
        if (bucket, skey) == (self.bucket, key):  # staging is the stored object itself
            return
        await in_thread(s3_call, "remove staging object", self.minio.remove_object, bucket, skey)
        log.info("staging_object_deleted", call_id=inp.call_id, bucket=bucket, key=skey)

    # --- helpers --------------------------------------------------------------------------

    async def _refuse_if_erased(self, inp: m.RecordingInput) -> None:
        """Raise CallErased (non-retryable) when the call's erasure is recorded."""
        if self.pool is None:
            return
        try:
            erased = await self.pool.fetchval(
                "SELECT 1 FROM erasures WHERE call_id = $1", inp.call_id
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ApplicationError(
                f"recording of call {inp.call_id}: cannot tell whether the call was erased "
                f"({type(exc).__name__})",
                type=act.ERR_DATABASE_UNAVAILABLE,
            ) from exc
        if erased:
            log.warning("recording_refused_call_erased", call_id=inp.call_id)
            raise ApplicationError(
                f"recording of call {inp.call_id}: the call was erased",
                type=act.ERR_CALL_ERASED,
                non_retryable=True,
            )

    def _result(
        self, inp: m.RecordingInput, key: str, size: int, sha: str, duration: float, already: bool
    ) -> m.RecordingResult:
        return m.RecordingResult(
            call_id=inp.call_id,
            bucket=self.bucket,
            key=key,
            size=size,
            sha256=sha,
            duration_s=duration,
            incomplete=incomplete_recording(duration, inp.call_duration_s),
            egress_id=inp.egress_id,
            already_stored=already,
        )

    async def _abort_previous_attempt(self, key: str) -> None:
        """A crashed or timed-out attempt left its upload id in its last heartbeat: discard it."""
        details = activity.info().heartbeat_details if activity.in_activity() else []
        upload_id = details[0].get("upload_id") if details and isinstance(details[0], dict) else ""
        if upload_id:
            await in_thread(abort_upload, self.minio, self.bucket, key, upload_id)

    async def _write(
        self,
        key: str,
        sink: MultipartSink,
        whole: bytes | None,
        metadata: dict[str, str],
        tags: Tags,
    ) -> None:
        if whole is not None:
            await in_thread(
                s3_call,
                "put object",
                self.minio.put_object,
                self.bucket,
                key,
                io.BytesIO(whole),
                len(whole),
                content_type=CONTENT_TYPE,
                # x-amz-* headers pass unprefixed: the store checks the body's SHA-256.
                metadata={**metadata, **whole_checksum(whole)},  # type: ignore[arg-type]
                tags=tags,
            )
            return
        await sink.complete()
        # Tagged last: an object without its sha256 tag counts as not stored (a crash right
        # here makes the next attempt write it again).
        await in_thread(
            s3_call, "set object tags", self.minio.set_object_tags, self.bucket, key, tags
        )

    async def _transfer(
        self,
        http: aiohttp.ClientSession,
        inp: m.RecordingInput,
        url: str,
        sink: MultipartSink,
        part_size: int = 0,
    ) -> _Download:
        got = _Download(part_size=part_size)
        resumes = 0
        last_beat, beat_at = 0.0, 0  # a heartbeat every second or every part, whichever first
        while True:
            headers = {"Accept-Encoding": "identity"}
            if got.size:
                headers["Range"] = f"bytes={got.size}-"
                if got.etag:
                    headers["If-Range"] = got.etag
            try:
                async with http.get(url, headers=headers) as resp:
                    if got.size and not _resumes_at(resp, got.size):
                        # The source cannot continue where we are: start again from byte 0.
                        log.warning(
                            "recording_download_restart", call_id=inp.call_id, status=resp.status
                        )
                        await sink.abort()
                        got = _Download(part_size=part_size)
                        if resp.status != 200:
                            resumes += 1
                            continue
                    self._check_status(inp, resp.status)
                    if not got.size:
                        got.total = resp.content_length or 0
                        got.etag = resp.headers.get("ETag", "")
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        if got.size < 4 and len(got.head) + len(chunk) >= 4:
                            if (got.head + chunk)[:4] != b"OggS":
                                raise ApplicationError(
                                    f"recording of call {inp.call_id} is not an Ogg file",
                                    type=act.ERR_SOURCE_UNUSABLE,
                                    non_retryable=True,
                                )
                        got.feed(chunk)
                        await sink.write(chunk)
                        now = time.monotonic()
                        if now - last_beat >= HEARTBEAT_EVERY_S or got.size >= beat_at:
                            last_beat, beat_at = now, got.size + sink.part_size
                            self._beat(got, sink)
                    self._beat(got, sink)
                    return got
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                resumes += 1
                if resumes > MAX_RESUMES:
                    raise ApplicationError(
                        f"recording of call {inp.call_id}: download kept failing after "
                        f"{got.size} bytes ({type(exc).__name__}: {exc})",
                        type=act.ERR_SOURCE_UNAVAILABLE,
                    ) from exc
                log.warning(
                    "recording_download_interrupted",
                    call_id=inp.call_id,
                    at_bytes=got.size,
                    resume=resumes,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(min(0.1 * 2**resumes, 5.0))

    @staticmethod
    def _check_status(inp: m.RecordingInput, status: int) -> None:
        if status < 300:
            return
        what = f"recording of call {inp.call_id}: the source answered HTTP {status}"
        if status in _UNUSABLE_STATUS:
            raise ApplicationError(what, type=act.ERR_SOURCE_UNUSABLE, non_retryable=True)
        raise ApplicationError(what, type=act.ERR_SOURCE_UNAVAILABLE)

    @staticmethod
    def _beat(got: _Download, sink: MultipartSink) -> None:
        if not activity.in_activity():
            return
        percent = round(100.0 * got.size / got.total, 1) if got.total else None
        details = {"bytes": got.size, "percent": percent, "upload_id": sink.upload_id}
        _LAST_BEAT.get({}).update(details)  # what the background beats repeat
        activity.heartbeat(details)


_LAST_BEAT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("last_beat")


@contextlib.asynccontextmanager
async def heartbeating(every_s: float = BACKGROUND_BEAT_S) -> AsyncIterator[None]:
    """Heartbeat every `every_s` while the body runs (with the latest progress details), so a
    slow phase never looks like a dead worker; outside an activity it does nothing."""
    if not activity.in_activity():
        yield
        return
    details: dict[str, Any] = {}
    token = _LAST_BEAT.set(details)

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            activity.heartbeat(dict(details))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        _LAST_BEAT.reset(token)


def _is_call_key(call_id: str, key: str) -> bool:
    """`conversations/<call_id>.ogg` or `conversations/<call_id>/<name>` (no `..`)."""
    if key == m.recording_object_key(call_id):
        return True
    prefix = f"conversations/{call_id}/"
    return key.startswith(prefix) and len(key) > len(prefix) and ".." not in key.split("/")


def _call_of(key: str) -> str:
    """The call id in a key of a call (`.../conversations/<call_id>/...`)."""
    return key.rpartition("conversations/")[2].split("/")[0].removesuffix(".ogg")


def whole_checksum(body: bytes) -> dict[str, str]:
    """The headers of a single PUT that make the store verify its body's SHA-256."""
    return {"x-amz-sdk-checksum-algorithm": "SHA256", CHECKSUM_SHA256: sha256_b64(body)}


def _is_call_source_key(call_id: str, key: str) -> bool:
    """A key of this call where Egress writes it, after any storage prefix
    (`<prefix>/conversations/<call_id>/...`, or the single `.ogg`); the first `conversations/`
    in the key counts."""
    at = key.find("conversations/")
    if at < 0 or (at > 0 and key[at - 1] != "/"):
        return False
    rest = key[at:]
    return rest == m.single_recording_object_key(call_id) or _is_call_key(call_id, rest)


def _resumes_at(resp: aiohttp.ClientResponse, offset: int) -> bool:
    """True when a ranged response continues exactly at `offset` (206 with that start)."""
    if resp.status != 206:
        return False
    content_range = resp.headers.get("Content-Range", "")  # "bytes 123-999/1000"
    try:
        start = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return start == offset


def _default_session() -> aiohttp.ClientSession:
    # No total timeout (files can be large); a stalled read is a cut connection.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=60),
        auto_decompress=False,
    )
