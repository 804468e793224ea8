"""download_and_store_recording reading Egress's staging bucket by bucket and key, with
credentials, for every location form Egress reports; the staging copy goes once stored.

S3 is moto's server (tests/fixtures/services.py); the staging bucket is a second bucket on it.
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from minio.error import S3Error

from activities import types as act
from activities.storage import STAGING_RULE_ID, StorageActivities
from bench.fixtures import write_ogg_like
from core import models as m
from tests.activities.conftest import Run, app_error

STAGING = "egress-staging-test"


@pytest.fixture
def staging(s3: Any) -> str:
    if not s3.client.bucket_exists(STAGING):
        s3.client.make_bucket(STAGING)
    return STAGING


def _acts(s3: Any, **kw: Any) -> StorageActivities:
    values: dict[str, Any] = {"staging_bucket": STAGING, "s3_endpoints": (s3.endpoint,)}
    values.update(kw)
    return StorageActivities(s3.client, s3.bucket, **values)


def _stage(s3: Any, tmp_path: Path, key: str, size: int = 300_000) -> str:
    path = tmp_path / "staged.ogg"
    sha = write_ogg_like(path, size, seed=random.randrange(1 << 30))
    s3.client.fput_object(STAGING, key, str(path), content_type="audio/ogg")
    return sha


def _input(call_id: str, location: str, size: int, object_key: str = "") -> m.RecordingInput:
    return m.RecordingInput(
        call_id=call_id, room_name=m.room_name_for(call_id), egress_id="EG_staging",
        location=location, expected_size=size, expected_duration_s=0, call_duration_s=0,
        object_key=object_key,
    )  # fmt: skip


def _gone(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.client.stat_object(bucket, key)
    except S3Error as exc:
        return exc.code in ("NoSuchKey", "NoSuchObject")
    return False


def _stored_sha(s3: Any, key: str) -> str:
    resp = s3.client.get_object(s3.bucket, key)
    try:
        return hashlib.sha256(resp.read()).hexdigest()
    finally:
        resp.close()
        resp.release_conn()


@pytest.mark.parametrize("form", ["path", "virtual_host", "scheme_in_host", "presigned"])
async def test_each_s3_location_form_is_read_with_credentials(
    s3: Any, staging: str, tmp_path: Path, form: str
) -> None:
    call_id = m.new_call_id()
    key = f"conversations/{call_id}/1.ogg"
    sha = _stage(s3, tmp_path, key)
    host = s3.endpoint
    location = {
        "path": f"http://{host}/{staging}/{key}",
        "virtual_host": f"http://{staging}.{host}/{key}",
        "scheme_in_host": f"https://{staging}.http://{host}/{key}",
        "presigned": s3.client.presigned_get_object(staging, key),
    }[form]
    result = await Run()(_acts(s3).download_and_store_recording, _input(call_id, location, 300_000))
    assert (result.key, result.sha256, result.size) == (key, sha, 300_000)
    assert _stored_sha(s3, key) == sha
    assert _gone(s3, staging, key), "the staging copy is deleted once the stored one verifies"


async def test_object_key_alone_reads_the_staging_bucket(
    s3: Any, staging: str, tmp_path: Path
) -> None:
    # The egress end went unseen: no location, only the key the egress was told to write.
    call_id = m.new_call_id()
    key = f"conversations/{call_id}/2.ogg"
    sha = _stage(s3, tmp_path, key, 100_000)
    result = await Run()(_acts(s3).download_and_store_recording, _input(call_id, "", 0, key))
    assert (result.key, result.sha256) == (key, sha) and _gone(s3, staging, key)


async def test_the_staging_object_is_private_and_still_read(
    s3: Any, staging: str, tmp_path: Path
) -> None:
    call_id = m.new_call_id()
    key = f"conversations/{call_id}.ogg"
    sha = _stage(s3, tmp_path, key, 50_000)
    location = f"http://{s3.endpoint}/{staging}/{key}"
    async with aiohttp.ClientSession() as http, http.get(location) as resp:
        anonymous = resp.status
    result = await Run()(_acts(s3).download_and_store_recording, _input(call_id, location, 50_000))
    assert result.sha256 == sha
    assert anonymous == 403  # the old anonymous GET of `location` would have failed here


async def test_a_host_not_allowed_is_refused_before_any_request(s3: Any, staging: str) -> None:
    call_id = m.new_call_id()
    inp = _input(call_id, f"http://files.example.org/{call_id}.ogg", 10)
    err = await app_error(Run()(_acts(s3).download_and_store_recording, inp))
    assert err.type == act.ERR_SOURCE_UNUSABLE and err.non_retryable
    assert "files.example.org" in str(err) and "RECORDING_SOURCE_HOSTS" in str(err)
    # AWS's legacy form is not our S3 here (moto is): refused the same way.
    legacy = _input(call_id, f"https://{staging}.s3.amazonaws.com/conversations/{call_id}.ogg", 10)
    err = await app_error(Run()(_acts(s3).download_and_store_recording, legacy))
    assert err.type == act.ERR_SOURCE_UNUSABLE


async def test_an_object_key_outside_the_call_is_refused(s3: Any, staging: str) -> None:
    call_id = m.new_call_id()
    inp = _input(call_id, "", 0, f"conversations/{m.new_call_id()}/1.ogg")
    err = await app_error(Run()(_acts(s3).download_and_store_recording, inp))
    assert err.type == act.ERR_INVALID_INPUT and err.non_retryable


@pytest.mark.parametrize("bucket_of", ["staging", "recordings"])
async def test_a_location_of_another_calls_object_is_refused_and_touches_it_not(
    s3: Any, staging: str, tmp_path: Path, bucket_of: str
) -> None:
    """A supervisor who can start a pipeline must not make it copy, then delete, another
    call's object (security item 3): the source must be under the pipeline's own call's key."""
    victim, attacker = m.new_call_id(), m.new_call_id()
    bucket = staging if bucket_of == "staging" else s3.bucket
    key = f"conversations/{victim}/1.ogg"
    path = tmp_path / "victim.ogg"
    write_ogg_like(path, 60_000, seed=7)
    s3.client.fput_object(bucket, key, str(path), content_type="audio/ogg")
    for location in (
        f"http://{s3.endpoint}/{bucket}/{key}",
        f"http://{s3.endpoint}/{bucket}/conversations/{attacker}/../../{key}",
        f"http://{s3.endpoint}/{bucket}/prefix/conversations/{victim}/conversations/{attacker}/1.ogg",
    ):
        inp = _input(attacker, location, 0, f"conversations/{attacker}/1.ogg")
        err = await app_error(Run()(_acts(s3).download_and_store_recording, inp))
        assert err.type == act.ERR_SOURCE_UNUSABLE and err.non_retryable, location
    assert not _gone(s3, bucket, key), "the other call's object is still there"
    assert _gone(s3, s3.bucket, f"conversations/{attacker}/1.ogg"), "nothing was copied"


async def test_a_storage_prefix_before_the_calls_key_is_read(
    s3: Any, staging: str, tmp_path: Path
) -> None:
    call_id = m.new_call_id()
    key = f"egress-prefix/conversations/{call_id}/1.ogg"
    sha = _stage(s3, tmp_path, key, 40_000)
    location = f"http://{s3.endpoint}/{staging}/{key}"
    result = await Run()(_acts(s3).download_and_store_recording, _input(call_id, location, 40_000))
    assert result.sha256 == sha and result.key == f"conversations/{call_id}/1.ogg"


async def test_keep_days_leaves_staging_to_its_lifecycle_rule(
    s3: Any, staging: str, tmp_path: Path
) -> None:
    acts = _acts(s3, staging_keep_days=3)
    acts.ensure_staging_bucket()
    (rule,) = [
        r for r in s3.client.get_bucket_lifecycle(staging).rules if r.rule_id == STAGING_RULE_ID
    ]
    assert rule.expiration.days == 3
    call_id = m.new_call_id()
    key = f"conversations/{call_id}/1.ogg"
    _stage(s3, tmp_path, key, 20_000)
    location = f"http://{s3.endpoint}/{staging}/{key}"
    await Run()(acts.download_and_store_recording, _input(call_id, location, 20_000))
    assert not _gone(s3, staging, key)
    # A second run (a retry after a crash) is a no-op on the stored copy and still keeps it.
    again = await Run()(acts.download_and_store_recording, _input(call_id, location, 20_000))
    assert again.already_stored and not _gone(s3, staging, key)


async def test_a_retry_after_store_still_removes_staging(
    s3: Any, staging: str, tmp_path: Path
) -> None:
    call_id = m.new_call_id()
    key = f"conversations/{call_id}/1.ogg"
    _stage(s3, tmp_path, key, 20_000)
    location = f"http://{s3.endpoint}/{staging}/{key}"
    keep = _acts(s3, staging_keep_days=1)
    await Run()(keep.download_and_store_recording, _input(call_id, location, 20_000))
    # As if the first attempt crashed between storing and deleting staging.
    again = await Run()(_acts(s3).download_and_store_recording, _input(call_id, location, 20_000))
    assert again.already_stored and _gone(s3, staging, key)
    s3.client.put_object(STAGING, "keep/other.ogg", io.BytesIO(b"OggS"), 4)  # not the call's
    assert not _gone(s3, staging, "keep/other.ogg")
