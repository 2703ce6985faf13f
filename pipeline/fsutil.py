"""fsspec helpers: storage options are given per protocol ({"s3": {...}}), so one run can read
s3:// and hf:// and write locally without passing S3 settings to the wrong filesystem."""

from __future__ import annotations

import os

LOCAL_PROTOCOLS = ("file", "local")  # this machine's own disk, as fsspec names it


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def is_local_url(url: str) -> bool:
    return protocol_of(url) in LOCAL_PROTOCOLS


def fs_protocol(fs) -> str:
    """The protocol an fsspec filesystem is known by (its first name: s3fs is ("s3", "s3a"))."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def is_local_fs(fs) -> bool:
    return fs_protocol(fs) in LOCAL_PROTOCOLS


def options_for(url: str, storage_options: dict | None) -> dict:
    return dict((storage_options or {}).get(protocol_of(url), {}))


class UnknownProtocolError(ValueError):
    """A URL whose scheme names no filesystem fsspec knows (its own refusal is a bare ValueError)."""


def unknown_protocol(url: str) -> str | None:
    """The protocol of `url` (of any link of a chained URL) that fsspec does not know, if any."""
    from fsspec.registry import known_implementations, registry

    for link in url.split("::"):
        protocol = protocol_of(link)
        if protocol not in known_implementations and protocol not in registry:
            return protocol
    return None


def url_to_fs(url: str, storage_options: dict | None = None):
    import fsspec

    protocol = unknown_protocol(url)
    if protocol is not None:
        raise UnknownProtocolError(f"unknown protocol {protocol!r} in {url}")
    return fsspec.core.url_to_fs(url, **options_for(url, storage_options))


def s3_options_from_env(endpoint_url: str | None = None, region: str | None = None,
                        profile: str | None = None, anon: bool = False) -> dict:
    """s3fs options; credentials come only from the environment or a named profile, never from here.
    The standard AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL variables are honoured."""
    options: dict = {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    if region:
        options.setdefault("client_kwargs", {})["region_name"] = region
    if profile:
        options["profile"] = profile
    if anon:
        options["anon"] = True
    return options
