"""Egress's upload of a finished file, as livekit/egress `uploader.go` and livekit/storage
`s3.go` do it: PutObject to the S3 target, then the location string Egress reports.

- force_path_style: `<endpoint>/<bucket>/<key>` (`https://` prefixed when the endpoint has no
  scheme); otherwise `https://<bucket>.<endpoint>/<key>` with the endpoint verbatim, or
  `s3.amazonaws.com` when none was given.
- a failed upload is `S3 upload failed: <error>`; with a backup storage the file goes there
  (`backup_storage_used`), and when both fail: `primary: ...\\nbackup: ...`.
- no storage at all: Egress's local storage keeps the file and reports its path.

The emulator only uploads to a custom endpoint (devstack's S3): it never calls AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from livekit.protocol import egress as egress_pb

CONTENT_TYPE = "audio/ogg"


class UploadFailed(Exception):
    """The upload failed; str() is the error text Egress puts in EgressInfo.error."""


@dataclass(frozen=True)
class S3Target:
    endpoint: str
    bucket: str
    region: str
    force_path_style: bool
    access_key: str = field(repr=False)
    secret: str = field(repr=False)

    @classmethod
    def from_request(cls, s3: egress_pb.S3Upload) -> S3Target:
        return cls(
            s3.endpoint, s3.bucket, s3.region or "us-east-1", s3.force_path_style,
            s3.access_key, s3.secret,
        )  # fmt: skip

    def with_bucket(self, bucket: str) -> S3Target:
        return S3Target(self.endpoint, bucket, self.region, self.force_path_style,
                        self.access_key, self.secret)  # fmt: skip


def s3_location(target: S3Target, key: str) -> str:
    """The location Egress reports for `key` uploaded to `target` (livekit/storage s3.go)."""
    endpoint = target.endpoint or "s3.amazonaws.com"
    if target.force_path_style:
        if not endpoint.startswith("http"):
            endpoint = "https://" + endpoint
        return f"{endpoint}/{target.bucket}/{key}"
    return f"https://{target.bucket}.{endpoint}/{key}"


def put_file(target: S3Target, path: Path, key: str) -> str:
    """Upload `path` to `key` (blocking); the location. Raises UploadFailed("S3 upload failed: ...")."""
    import urllib3
    from minio import Minio
    from minio.error import MinioException

    if not target.endpoint:
        raise UploadFailed("S3 upload failed: the emulator uploads only to a custom endpoint")
    parts = urlsplit(target.endpoint if "://" in target.endpoint else "https://" + target.endpoint)
    client = Minio(
        parts.netloc,
        access_key=target.access_key,
        secret_key=target.secret,
        secure=parts.scheme == "https",
        region=target.region,
    )
    try:
        client.fput_object(target.bucket, key, str(path), content_type=CONTENT_TYPE)
    except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise UploadFailed(f"S3 upload failed: {_s3_error_text(exc)}") from exc
    return s3_location(target, key)


def upload_with_backup(
    primary: S3Target,
    backup: S3Target | None,
    path: Path,
    key: str,
    primary_error: str = "",
    backup_error: str = "",
) -> tuple[str, bool]:
    """Egress's Upload: the primary, then the backup on failure. (location, backup_used).

    `primary_error` / `backup_error` (faults) make that upload fail with the text given.
    """
    try:
        if primary_error:
            raise UploadFailed(f"S3 upload failed: {primary_error}")
        return put_file(primary, path, key), False
    except UploadFailed as first:
        if backup is None:
            raise
        try:
            if backup_error:
                raise UploadFailed(f"S3 upload failed: {backup_error}")
            return put_file(backup, path, key), True
        except UploadFailed as second:
            raise UploadFailed(f"primary: {first}\nbackup: {second}") from second


def _s3_error_text(exc: BaseException) -> str:
    """The shape of aws-sdk-go-v2's error for a failed PutObject, from minio's exception."""
    code = getattr(exc, "code", "")
    status = getattr(getattr(exc, "response", None), "status", 0)
    if code:
        return (
            f"operation error S3: PutObject, https response error StatusCode: {status}, "
            f"api error {code}: {getattr(exc, 'message', '') or code}"
        )
    return f"operation error S3: PutObject, {type(exc).__name__}: {exc}"
