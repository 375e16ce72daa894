"""A real S3 endpoint for tests: moto's HTTP server on 127.0.0.1, spoken to by s3fs and boto3.

    @pytest.fixture(scope="module")
    def s3():
        with moto_s3() as server:
            yield server

    bucket = s3.create_bucket(unique_bucket("crashes"))
    s3.put(bucket, "fleet-a/core.1", path_or_bytes)    # -> {url, size, etag}
    s3.options                             # fsspec storage options (endpoint, key, secret)
    s3.fs                                  # an s3fs filesystem with those options
    s3.keys(bucket, "fleet-a/")            # every key under a prefix
    toml_value(s3.options)                 # the options as a TOML inline table

moto keeps its buckets in the process, not in the server: every server started in one pytest
run sees the buckets of the others (tests/test_sources.py makes `crashes`, say). Name buckets
with `unique_bucket(prefix)`.

The server runs in the test process (a thread); other processes (the `triage sweep` client,
Dask workers) reach it through the endpoint URL in the storage options, so nothing depends on
the environment. While it runs, the environment of this process holds fake credentials and
no AWS profile or endpoint override, and NO_PROXY covers 127.0.0.1 (`subprocess_env()` gives
the same for child processes).

Skips (pytest.skip) when s3fs or moto's server is not installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

KEY = SECRET = "testing"
REGION = "us-east-1"

#: Environment names that would point boto at something other than the test server.
_AWS_OVERRIDES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_DEFAULT_REGION": REGION,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def unique_bucket(prefix: str) -> str:
    """A bucket name no other test of this process uses (see the module doc)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def storage_options(endpoint: str, **extra: Any) -> dict[str, Any]:
    """fsspec/s3fs storage options for `endpoint` with the test credentials."""
    return {
        "key": KEY,
        "secret": SECRET,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION},
        **extra,
    }


def toml_value(value: Any) -> str:
    """A Python value (str, number, bool, list, dict) as a TOML value (inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def subprocess_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) with the test credentials and no AWS overrides."""
    env = dict(os.environ if base is None else base)
    for name in _AWS_OVERRIDES:
        env.pop(name, None)
    env.update(_AWS_ENV)
    return env


@dataclass
class S3Server:
    endpoint: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def fs(self) -> Any:
        """A fresh s3fs filesystem (no listing cache carried over from earlier calls)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | str | os.PathLike[str],
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Upload bytes or a local file; returns {url, size, etag} of the object."""
        client = self.client()
        if isinstance(body, bytes):
            client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})
        else:
            with open(body, "rb") as stream:
                client.put_object(Bucket=bucket, Key=key, Body=stream, Metadata=metadata or {})
        head = client.head_object(Bucket=bucket, Key=key)
        return {
            "url": f"s3://{bucket}/{key}",
            "size": head["ContentLength"],
            "etag": head["ETag"],
        }

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix`, sorted (hidden names included)."""
        client = self.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)


@contextlib.contextmanager
def moto_s3() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 for the duration of the block (see the module doc)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install s3fs)")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
    moto_server = pytest.importorskip(
        "moto.server", reason="moto's server is not installed (pip install 'moto[server]')"
    )
    with pytest.MonkeyPatch.context() as env:
        for name in _AWS_OVERRIDES:
            env.delenv(name, raising=False)
        for name, value in _AWS_ENV.items():
            env.setenv(name, value)
        # One log line per request otherwise, in every failing test's report.
        access_log = logging.getLogger("werkzeug")
        level = access_log.level
        access_log.setLevel(logging.WARNING)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            yield S3Server(endpoint, storage_options(endpoint))
        finally:
            server.stop()
            access_log.setLevel(level)
