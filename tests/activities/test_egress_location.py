"""Every location form LiveKit Egress reports (livekit/storage s3.go, egress uploader.go)."""

from __future__ import annotations

import pytest

from activities.egress_location import (
    EgressObject,
    LocationError,
    endpoint_host,
    parse_egress_location,
)

KEY = "conversations/c_abc/1.ogg"


@pytest.mark.parametrize(
    ("location", "endpoints", "expected"),
    [
        # force_path_style with a custom endpoint (compose: Egress -> http://minio:9000)
        (
            f"http://minio:9000/egress/{KEY}",
            ("minio:9000",),
            EgressObject("egress", KEY, f"http://minio:9000/egress/{KEY}", "minio:9000"),
        ),
        # path style, endpoint configured without a scheme: Egress prefixes https://
        (
            f"https://s3.example.com/egress/{KEY}",
            ("https://s3.example.com",),
            EgressObject("egress", KEY, f"https://s3.example.com/egress/{KEY}", "s3.example.com"),
        ),
        # virtual host on a custom endpoint
        (
            f"https://egress.s3.example.com/{KEY}",
            ("s3.example.com",),
            EgressObject("egress", KEY, f"https://egress.s3.example.com/{KEY}", "s3.example.com"),
        ),
        # legacy / no endpoint: AWS virtual host
        (
            f"https://my-bucket.s3.amazonaws.com/{KEY}",
            (),
            EgressObject(
                "my-bucket", KEY, f"https://my-bucket.s3.amazonaws.com/{KEY}", "s3.amazonaws.com"
            ),
        ),
        # AWS path style on a regional host
        (
            f"https://s3.eu-west-1.amazonaws.com/my-bucket/{KEY}",
            (),
            EgressObject(
                "my-bucket",
                KEY,
                f"https://s3.eu-west-1.amazonaws.com/my-bucket/{KEY}",
                "s3.eu-west-1.amazonaws.com",
            ),
        ),
    ],
)
def test_plain_locations(location: str, endpoints: tuple[str, ...], expected: EgressObject) -> None:
    assert parse_egress_location(location, endpoints=endpoints) == expected


def test_virtual_host_with_an_endpoint_that_had_a_scheme() -> None:
    # Egress formats https://<bucket>.<endpoint>/<key> with the endpoint verbatim.
    loc = f"https://egress.http://minio:9000/{KEY}"
    got = parse_egress_location(loc, endpoints=("http://minio:9000",))
    assert (got.bucket, got.key, got.host, got.url) == ("egress", KEY, "minio:9000", loc)


@pytest.mark.parametrize(
    ("location", "bucket", "host"),
    [
        (
            "http://127.0.0.1:9000/egress/conversations/c_abc/1.ogg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z"
            "&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=abcdef",
            "egress",
            "127.0.0.1:9000",
        ),
        (
            "https://rec.s3.us-east-2.amazonaws.com/conversations/c_abc/1.ogg?X-Amz-Signature=ab"
            "&X-Amz-Credential=x",
            "rec",
            "s3.us-east-2.amazonaws.com",
        ),
    ],
)
def test_presigned_urls(location: str, bucket: str, host: str) -> None:
    got = parse_egress_location(location, endpoints=("127.0.0.1:9000",))
    assert (got.bucket, got.key, got.host, got.presigned) == (bucket, KEY, host, True)


def test_percent_encoded_key_is_decoded() -> None:
    got = parse_egress_location("http://minio:9000/egress/a%20b/x.ogg", endpoints=("minio:9000",))
    assert got.key == "a b/x.ogg"


def test_filename_alone_names_the_key_in_the_staging_bucket() -> None:
    assert parse_egress_location("", KEY) == EgressObject("", KEY)


def test_an_unknown_host_is_only_a_url() -> None:
    got = parse_egress_location(f"https://cdn.example.org/{KEY}", endpoints=("minio:9000",))
    assert (got.bucket, got.key, got.host) == ("", KEY, "cdn.example.org")


@pytest.mark.parametrize(
    ("location", "filename"),
    [
        ("", ""),
        ("", "conversations/"),
        ("ftp://minio:9000/egress/x.ogg", ""),
        ("/local/path/x.ogg", ""),
        ("http://minio:9000/egress", ""),
        ("http://minio:9000/egress/", ""),
        ("https://cdn.example.org/", ""),
    ],
)
def test_no_object_is_an_error(location: str, filename: str) -> None:
    with pytest.raises(LocationError):
        parse_egress_location(location, filename, endpoints=("minio:9000",))


def test_endpoint_host() -> None:
    assert endpoint_host("http://MinIO:9000/") == "minio:9000"
    assert endpoint_host("https://s3.example.com:443") == "s3.example.com"
    assert endpoint_host("127.0.0.1:9000") == "127.0.0.1:9000"
