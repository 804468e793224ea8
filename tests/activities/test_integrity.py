"""The stored recording is checked against what Egress produced, and the store checks our upload.

Against the source: the bytes read must be the staged object as the store describes it (its
size, its ETag — the MD5, or for a multipart upload the MD5 of its parts' MD5s —, its SHA-256
checksum when it has one), not a tag the pipeline wrote itself. Our upload names each part's
SHA-256 (S3 additional checksums), so the store refuses a body damaged on the way.

S3 is moto's server; `tests/fixtures/s3_checksums.py` stands in front of it for what moto will
not do: check `x-amz-checksum-sha256` as MinIO does, and damage bytes in transit.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import pytest
from minio.error import S3Error

from activities import types as act
from activities.storage import StagedObject, StorageActivities, _Download
from bench.fixtures import write_ogg_like
from core import models as m
from tests.activities.conftest import Run, app_error
from tests.fixtures.s3_checksums import checking_s3

STAGING = "egress"
MiB = 1024 * 1024


def _stage(s3: Any, tmp_path: Path, key: str, size: int, part_size: int = 0) -> str:
    path = tmp_path / "staged.ogg"
    sha = write_ogg_like(path, size, seed=random.randrange(1 << 30))
    kw = {"part_size": part_size} if part_size else {}
    s3.client.fput_object(STAGING, key, str(path), content_type="audio/ogg", **kw)
    return sha


def _input(call_id: str, key: str) -> m.RecordingInput:
    return m.RecordingInput(
        call_id=call_id, room_name=m.room_name_for(call_id), egress_id="EG_integrity",
        location="", expected_size=0, expected_duration_s=0, call_duration_s=0, object_key=key,
    )  # fmt: skip


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.client.stat_object(bucket, key)
    except S3Error:
        return False
    return True


@pytest.mark.parametrize("parts", [0, 3])
async def test_the_read_is_checked_against_the_staged_objects_etag(
    s3: Any, tmp_path: Path, parts: int
) -> None:
    """A single PUT's ETag is its MD5; a multipart one's the MD5 of the parts' MD5s."""
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    size = 11 * MiB if parts else 300_000
    sha = _stage(s3, tmp_path, key, size, part_size=5 * MiB if parts else 0)
    acts = StorageActivities(s3.client, s3.bucket, staging_bucket=STAGING, part_size=5 * MiB)
    staged = acts._stat_staged(acts.recording_source(_input(call_id, key)))
    assert staged.parts == parts and staged.size == size
    assert staged.part_size == (5 * MiB if parts else 0)
    result = await Run()(acts.download_and_store_recording, _input(call_id, key))
    assert (result.sha256, result.size) == (sha, size)


@pytest.mark.parametrize("parts", [0, 3])
async def test_a_staged_body_corrupted_on_the_way_is_refused_and_nothing_stored(
    s3: Any, tmp_path: Path, parts: int
) -> None:
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    _stage(s3, tmp_path, key, 11 * MiB if parts else 300_000, 5 * MiB if parts else 0)
    async with checking_s3(s3.endpoint) as (proxy, minio):
        proxy.corrupt_get = lambda path: path.startswith(f"/{STAGING}/")
        acts = StorageActivities(
            minio, s3.bucket, staging_bucket=STAGING, part_size=5 * MiB,
            s3_endpoints=(proxy.endpoint,),
        )  # fmt: skip
        err = await app_error(Run()(acts.download_and_store_recording, _input(call_id, key)))
    assert err.type == act.ERR_SOURCE_MISMATCH and not err.non_retryable  # read it again
    assert "ETag" in str(err)
    assert not _exists(s3, s3.bucket, key), "nothing stored"
    assert _exists(s3, STAGING, key), "the staged file is kept for the next attempt"


async def test_a_staged_body_shorter_than_the_store_says_is_refused(
    s3: Any, tmp_path: Path
) -> None:
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    _stage(s3, tmp_path, key, 200_000)
    async with checking_s3(s3.endpoint) as (proxy, minio):
        proxy.short_get = lambda path: path.startswith(f"/{STAGING}/")
        acts = StorageActivities(
            minio, s3.bucket, staging_bucket=STAGING, s3_endpoints=(proxy.endpoint,)
        )
        # expected_size unknown (found at its key in staging): only the store can tell.
        err = await app_error(Run()(acts.download_and_store_recording, _input(call_id, key)))
    assert err.type == act.ERR_SOURCE_MISMATCH
    assert "199999 bytes, the store holds 200000" in str(err)
    assert not _exists(s3, s3.bucket, key) and _exists(s3, STAGING, key)


@pytest.mark.parametrize("size", [300_000, 11 * MiB])
async def test_our_upload_names_each_parts_checksum_and_the_store_verifies_it(
    s3: Any, tmp_path: Path, size: int
) -> None:
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    sha = _stage(s3, tmp_path, key, size)
    async with checking_s3(s3.endpoint) as (proxy, minio):
        acts = StorageActivities(
            minio, s3.bucket, staging_bucket=STAGING, part_size=5 * MiB,
            s3_endpoints=(proxy.endpoint,),
        )  # fmt: skip
        result = await Run()(acts.download_and_store_recording, _input(call_id, key))
    assert result.sha256 == sha
    writes = [
        c for meth, path, c in proxy.seen
        if meth == "PUT" and path.startswith(f"/{s3.bucket}/{key}") and "tagging" not in path
    ]  # fmt: skip
    assert writes and all(writes), "every part (or the single PUT) names its SHA-256"
    if size > 5 * MiB:
        assert len(writes) == 3
        [complete] = proxy.completes
        assert complete.count(b"<ChecksumSHA256>") == 3


@pytest.mark.parametrize("size", [300_000, 11 * MiB])
async def test_a_body_damaged_on_its_way_to_the_store_is_refused_by_the_store(
    s3: Any, tmp_path: Path, size: int
) -> None:
    call_id = m.new_call_id()
    key = m.recording_object_key(call_id, 1)
    _stage(s3, tmp_path, key, size)
    async with checking_s3(s3.endpoint) as (proxy, minio):
        proxy.corrupt_put = lambda path: path == f"/{s3.bucket}/{key}"
        acts = StorageActivities(
            minio, s3.bucket, staging_bucket=STAGING, part_size=5 * MiB,
            s3_endpoints=(proxy.endpoint,),
        )  # fmt: skip
        err = await app_error(Run()(acts.download_and_store_recording, _input(call_id, key)))
    assert err.type == act.ERR_STORAGE_UNAVAILABLE and not err.non_retryable
    assert proxy.refused, "the store refused the damaged body"
    assert not _exists(s3, s3.bucket, key), "nothing stored"
    assert _exists(s3, STAGING, key)


async def test_a_staged_object_not_there_is_a_404_for_ops_not_a_storage_outage(s3: Any) -> None:
    """Read at its key (LiveKit down across the hang-up) and not there: the pipeline waits for
    ops at once, as for any 404, instead of retrying a day as if the store were down."""
    call_id = m.new_call_id()
    acts = StorageActivities(s3.client, s3.bucket, staging_bucket=STAGING)
    inp = _input(call_id, m.recording_object_key(call_id, 1))
    err = await app_error(Run()(acts.download_and_store_recording, inp))
    assert err.type == act.ERR_SOURCE_UNUSABLE and err.non_retryable
    assert "404" in str(err) and call_id in str(err)


def test_an_encrypted_staged_objects_etag_is_not_taken_for_an_md5() -> None:
    """SSE-KMS, SSE-C (and MinIO's SSE-S3) ETags are no MD5 of the bytes: comparing would
    refuse every read of such a file for ever. The size (and a checksum) still count."""
    got = _Download()
    got.feed(b"OggS" + bytes(100))
    foreign = "0123456789abcdef0123456789abcdef"
    assert StagedObject(104, foreign, encrypted=True).mismatch(got) == ""
    assert "MD5" in StagedObject(104, foreign).mismatch(got)
    assert "bytes" in StagedObject(105, foreign, encrypted=True).mismatch(got)
    right = base64.b64encode(got.hasher.digest()).decode()
    assert StagedObject(104, foreign, sha256=right, encrypted=True).mismatch(got) == ""
    wrong = StagedObject(104, foreign, sha256=right[::-1], encrypted=True)
    assert "SHA-256" in wrong.mismatch(got)
