"""Where LiveKit Egress put a file: bucket and key from its `FileInfo.location` and `.filename`.

Egress (livekit/egress `uploader.go`, livekit/storage `s3.go`) reports, per configuration:

- path style with a custom endpoint: `<endpoint>/<bucket>/<key>`, the endpoint given
  `https://` when it had no scheme (`http://minio:9000/egress/conversations/x.ogg`);
- virtual host: `https://<bucket>.<endpoint>/<key>` where `<endpoint>` is the configured
  value verbatim, scheme included (so `https://egress.http://minio:9000/<key>` is real output);
- no endpoint (AWS, older releases): `https://<bucket>.s3.amazonaws.com/<key>`;
- `generate_presigned_url`: a presigned GET URL of either style, with `X-Amz-*` parameters;
- `FileInfo.filename` is the requested filepath after templating, without the storage prefix.

`parse_egress_location` is pure: it needs the S3 endpoints the product knows (host[:port]) to
tell a path-style URL from a virtual-host one on a custom endpoint; AWS hosts are always known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

# s3.amazonaws.com, s3.<region>.amazonaws.com, s3-<region>.amazonaws.com (and dualstack)
_AWS_HOST = re.compile(r"^s3([.-][a-z0-9-]+)*\.amazonaws\.com(\.cn)?$")
# Egress's virtual-host location built from an endpoint that carried its own scheme
_SCHEME_IN_HOST = re.compile(r"^https://([^/]+?)\.(https?)://(.+)$")
_PRESIGN_PARAMS = ("x-amz-signature", "x-amz-credential", "signature", "awsaccesskeyid")


class LocationError(ValueError):
    """The location (or filename) names no object: the message says what is wrong."""


@dataclass(frozen=True)
class EgressObject:
    """Bucket and key of an egress file, and the URL and host it was reported at.

    `bucket` is "" when only a filename was known or the host is not an S3 endpoint we know
    (then only an http(s) fetch of `url` can read it). `host` is lower-case host[:port].
    """

    bucket: str
    key: str
    url: str = ""
    host: str = ""
    presigned: bool = False


def parse_egress_location(
    location: str, filename: str = "", *, endpoints: Iterable[str] = ()
) -> EgressObject:
    """Bucket and key of an egress file from its location (preferred) or filename.

    `endpoints` are the custom S3 endpoints the product knows, as host[:port] or URLs.
    Raises `LocationError` when neither names an object.
    """
    if not location:
        key = filename.lstrip("/")
        if not key or key.endswith("/"):
            raise LocationError("egress reported neither a location nor a filename")
        return EgressObject(bucket="", key=key)
    url = location
    quirk = _SCHEME_IN_HOST.match(location)
    if quirk:  # https://<bucket>.http://host:port/key -> http://<bucket>.host:port/key
        url = f"{quirk.group(2)}://{quirk.group(1)}.{quirk.group(3)}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LocationError("location is not an http(s) URL")
    host = _host_port(parts.hostname, parts.port, parts.scheme)
    query = {k.lower() for k in parse_qs(parts.query)}
    presigned = any(p in query for p in _PRESIGN_PARAMS)
    path = unquote(parts.path).lstrip("/")
    known = {endpoint_host(e) for e in endpoints if e}
    if host in known or _AWS_HOST.match(parts.hostname):
        bucket, _, key = path.partition("/")
        return _checked(EgressObject(bucket, key, location, host, presigned))
    for endpoint in sorted(known, key=len, reverse=True):
        if host.endswith("." + endpoint):
            bucket = host[: -len(endpoint) - 1]
            return _checked(EgressObject(bucket, path, location, endpoint, presigned))
    aws = re.match(r"^(.+?)\.(s3([.-][a-z0-9-]+)*\.amazonaws\.com(\.cn)?)$", parts.hostname)
    if aws:
        return _checked(EgressObject(aws.group(1), path, location, aws.group(2), presigned))
    if not path:
        raise LocationError("location names no object")
    return EgressObject(bucket="", key=path, url=location, host=host, presigned=presigned)


def _checked(obj: EgressObject) -> EgressObject:
    if not obj.bucket or not obj.key or obj.key.endswith("/"):
        raise LocationError("location names no bucket and key")
    return obj


def _host_port(hostname: str, port: int | None, scheme: str) -> str:
    default = 443 if scheme == "https" else 80
    return hostname.lower() if port in (None, default) else f"{hostname.lower()}:{port}"


def endpoint_host(endpoint: str) -> str:
    """host[:port] of an endpoint given as host[:port] or URL, lower-case, default port dropped."""
    rest = endpoint.split("://", 1)[-1].split("/", 1)[0].lower()
    for default in (":80", ":443"):
        rest = rest.removesuffix(default)
    return rest
