"""Sources of the sweep: listing a local tree and the same tree in a real S3 endpoint (moto's
server on 127.0.0.1), what a systemd-coredump name, its xattrs, a sidecar and object metadata
say about a core, recognising cores by content, fetching, and the errors that stop a sweep.

Nothing is mocked: S3 is moto's HTTP server spoken to by s3fs, cores are real gcore dumps.
"""

from __future__ import annotations

import _ctypes
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import boto3
import moto.server
import pytest
import requests
from corefactory import COMPRESSION_SUFFIXES, compress, preferred_interpreter

from triage.coredump.sniff import sniff_core
from triage.pipeline.collection import collection_for, parse_systemd_name
from triage.pipeline.sources import (
    CoreObject,
    SourceError,
    core_id,
    fetch,
    list_sources,
    read_head,
)
from triage.report import Collection

BOOT = "0123456789abcdef0123456789abcdef"
T0 = 1_764_000_000  # 2025-11-24T16:00:00Z

# The tree: relative path -> (content, mtime in ns). Names are as systemd-coredump writes them.
A = f"core.python3\\x2e12.1000.{BOOT}.4242.1764000000123456.zst"
B = f"core.my\\x20app.0.{BOOT}.77.1764000001000000.xz"
C = f"core.worker.1001.{BOOT}.12.1764000002000000.lz4"
D = f"core.a\\x5cb\\xc3\\xa9.1000.{BOOT}.5.1764000003000000"
E = f"core.svc.1000.{BOOT}.300.1764000005000000"
BAD = f"bad/core.x.1000.{BOOT}.1.1764000004000000"
NESTED = "nested/deeper/core.1234"
ORPHAN = "orphan.json"
C_SIDECAR = {
    "hostname": "web-3",
    "pid": 99,
    "timestamp": "2025-11-24T17:00:00+01:00",
    "fleet": "web",
    "ticket": "OPS-7",
    "retries": 2,
}
E_SIDECAR = {"host": "sidecar-host", "pid": "302"}
TREE: dict[str, tuple[bytes, int]] = {
    A: (b"A" * 10, T0 * 10**9 + 123_456_000),
    B: (b"B" * 20, (T0 + 1) * 10**9),
    C: (b"C" * 30, (T0 + 2) * 10**9),
    C + ".json": (json.dumps(C_SIDECAR).encode(), (T0 + 2) * 10**9),
    D: (b"D" * 40, (T0 + 3) * 10**9),
    E: (b"E" * 50, (T0 + 5) * 10**9),
    E + ".json": (json.dumps(E_SIDECAR).encode(), (T0 + 5) * 10**9),
    BAD: (b"X" * 5, (T0 + 4) * 10**9),
    BAD + ".json": (b"{not json", (T0 + 4) * 10**9),
    NESTED: (b"N" * 7, (T0 + 6) * 10**9),
    ORPHAN: (b'{"host": "nobody"}', (T0 + 7) * 10**9),
    # never listed:
    ".hidden-core": (b"H", T0 * 10**9),
    "_SUCCESS": (b"", T0 * 10**9),
    ".tmpdir/core.inside-hidden-dir": (b"H", T0 * 10**9),
    "_staging/core.1": (b"H", T0 * 10**9),
    "nested/.part-1.tmp": (b"H", T0 * 10**9),
}
#: What a listing yields, in order, with the sidecar each gets.
LISTED = [BAD, D, B, A, E, C, NESTED, ORPHAN]
SIDECARS = {BAD: BAD + ".json", C: C + ".json", E: E + ".json"}
MTIMES = {
    A: "2025-11-24T16:00:00.123456Z",
    B: "2025-11-24T16:00:01Z",
    C: "2025-11-24T16:00:02Z",
    D: "2025-11-24T16:00:03Z",
    E: "2025-11-24T16:00:05Z",
    BAD: "2025-11-24T16:00:04Z",
    NESTED: "2025-11-24T16:00:06Z",
    ORPHAN: "2025-11-24T16:00:07Z",
}
XATTRS_B = {
    "user.coredump.pid": b"78",
    "user.coredump.uid": b"0",
    "user.coredump.gid": b"0",
    "user.coredump.signal": b"11",
    "user.coredump.timestamp": b"1764000001500000",
    "user.coredump.rlimit": b"18446744073709551615",
    "user.coredump.hostname": b"db-1",
    "user.coredump.comm": b"my app",
    "user.coredump.exe": b"/usr/bin/myapp",
}
XATTRS_E = {
    "user.coredump.hostname": b"xattr-host",
    "user.coredump.pid": b"301",
    "user.coredump.exe": b"/usr/bin/svc",
}
#: S3 user metadata of two objects (S3 lower-cases the keys).
METADATA = {
    A: {
        "Host": "web-7",
        "fleet": "web",
        "Exe": "/usr/bin/python3.12",
        "pid": "4243",
        "ticket": "OPS-1",
    },
    C: {"host": "meta-host", "signal": "SIGABRT", "comm": "meta-comm"},
}


def write_tree(root: Path) -> str | None:
    """Write TREE under root; return why user xattrs could not be set, or None."""
    for rel, (content, mtime_ns) in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, ns=(mtime_ns, mtime_ns))
    try:
        for rel, attrs in ((B, XATTRS_B), (E, XATTRS_E)):
            for name, value in attrs.items():
                os.setxattr(root / rel, name, value)
    except OSError as exc:
        return f"this filesystem refuses user extended attributes: {exc.strerror}"
    return None


def expected_id(url: str, size: int, etag: str | None, mtime: str | None) -> str:
    key = f"{url}\n{etag}" if etag else f"{url}\n{size}\n{mtime}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str | None]:
    root = tmp_path_factory.mktemp("sources") / "cores"
    root.mkdir()
    return root, write_tree(root)


@pytest.fixture
def fresh_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cores"
    root.mkdir()
    write_tree(root)
    return root


# --------------------------------------------------------------------------------------------
# systemd-coredump's file names


def test_parse_systemd_name_decodes_escapes_and_usec() -> None:
    assert parse_systemd_name(A) == {
        "comm": "python3.12",
        "uid": 1000,
        "boot_id": BOOT,
        "pid": 4242,
        "timestamp": "2025-11-24T16:00:00.123456Z",
    }
    assert parse_systemd_name("/var/lib/systemd/coredump/" + B)["comm"] == "my app"
    assert parse_systemd_name(D)["comm"] == "a\\bé"
    assert parse_systemd_name(E) == {
        "comm": "svc",
        "uid": 1000,
        "boot_id": BOOT,
        "pid": 300,
        "timestamp": "2025-11-24T16:00:05Z",
    }


@pytest.mark.parametrize(
    "name",
    [
        "core.1234",
        "core",
        f"core.py.1000.{BOOT}.4242",  # no timestamp
        f"core.py.x.{BOOT}.4242.1764000000000000",  # uid not a number
        f"core.py.1000.{BOOT[:-1]}.4242.1764000000000000",  # boot id too short
        f"core.py.1000.{BOOT}.4242.1764000000000000.bz2",  # not a systemd compression
        f"core.py.thon.1000.{BOOT}.4242.1764000000000000",  # an unescaped dot in COMM
        f"dump.py.1000.{BOOT}.4242.1764000000000000",
    ],
)
def test_parse_systemd_name_rejects_other_names(name: str) -> None:
    assert parse_systemd_name(name) is None


# --------------------------------------------------------------------------------------------
# Local listing


def local_expected(root: Path) -> list[CoreObject]:
    out = []
    for rel in LISTED:
        url = str(root / rel)
        size = len(TREE[rel][0])
        sidecar = str(root / SIDECARS[rel]) if rel in SIDECARS else None
        out.append(
            CoreObject(
                url, size, None, MTIMES[rel], expected_id(url, size, None, MTIMES[rel]), sidecar, {}
            )
        )
    return out


def test_local_listing_is_exact(tree) -> None:
    root, _ = tree
    assert list(list_sources([str(root)])) == local_expected(root)


def test_local_listing_is_stable_and_the_same_through_file_urls(tree) -> None:
    root, _ = tree
    first = list(list_sources([str(root)]))
    assert list(list_sources([str(root) + "/"])) == first
    assert list(list_sources(["file://" + str(root)])) == first
    # overlapping sources list each file once
    assert list(list_sources([str(root / "nested"), str(root)])) == first


def test_local_relative_path_becomes_absolute(tree, monkeypatch) -> None:
    root, _ = tree
    monkeypatch.chdir(root.parent)
    assert list(list_sources(["cores"])) == local_expected(root)


def test_single_file_source_keeps_its_sidecar(tree) -> None:
    root, _ = tree
    url = str(root / C)
    mtime = MTIMES[C]
    assert list(list_sources([url])) == [
        CoreObject(url, 30, None, mtime, expected_id(url, 30, None, mtime), url + ".json", {})
    ]


def test_core_id_changes_with_the_file(fresh_tree: Path) -> None:
    ids = {o.url: o.core_id for o in list_sources([str(fresh_tree)])}
    assert {o.url: o.core_id for o in list_sources([str(fresh_tree)])} == ids
    path = fresh_tree / A
    os.utime(path, ns=((T0 + 100) * 10**9,) * 2)  # touched: new mtime
    after_touch = {o.url: o.core_id for o in list_sources([str(fresh_tree)])}
    url = str(path)
    assert after_touch[url] == expected_id(url, 10, None, "2025-11-24T16:01:40Z")
    assert after_touch[url] != ids[url]
    assert {k: v for k, v in after_touch.items() if k != url} == {
        k: v for k, v in ids.items() if k != url
    }
    path.write_bytes(b"A" * 11)  # rewritten: new size (same mtime)
    os.utime(path, ns=((T0 + 100) * 10**9,) * 2)
    after_write = {o.url: o.core_id for o in list_sources([str(fresh_tree)])}
    assert after_write[url] == expected_id(url, 11, None, "2025-11-24T16:01:40Z")
    assert len({ids[url], after_touch[url], after_write[url]}) == 3
    assert core_id(url, 11, None, "2025-11-24T16:01:40Z") == after_write[url]


def test_local_symlink_to_a_file_is_listed_and_a_fifo_with_its_problem(fresh_tree: Path) -> None:
    """A link to a file stands for it; a FIFO is listed marked as no file to open (its row
    says so), a link to a directory is not followed."""
    os.symlink(fresh_tree / NESTED, fresh_tree / "nested" / "link-to-core")
    os.symlink(fresh_tree / "nested" / "deeper", fresh_tree / "nested" / "link-to-dir")
    os.mkfifo(fresh_tree / "nested" / "a-fifo")
    listed = {o.url: o.problem for o in list_sources([str(fresh_tree / "nested")])}
    assert listed == {
        str(fresh_tree / "nested" / "a-fifo"): (
            "not_core",
            "a FIFO (named pipe), not a file that can hold a core",
        ),
        str(fresh_tree / "nested" / "deeper" / "core.1234"): None,
        str(fresh_tree / "nested" / "link-to-core"): None,
    }


# --------------------------------------------------------------------------------------------
# Collections from local files


def test_collection_from_the_name_alone(tree) -> None:
    root, _ = tree
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(A))
    assert collection_for(obj) == Collection(
        source_url=str(root / A),
        comm="python3.12",
        uid=1000,
        pid=4242,
        timestamp="2025-11-24T16:00:00.123456Z",
        size=10,
        etag=None,
        mtime="2025-11-24T16:00:00.123456Z",
        extra={"boot_id": BOOT},
    )


def test_collection_with_escapes_in_comm(tree) -> None:
    root, _ = tree
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(D))
    assert collection_for(obj).comm == "a\\bé"


def test_collection_sidecar_overrides_the_name(tree) -> None:
    root, _ = tree
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(C))
    assert collection_for(obj) == Collection(
        source_url=str(root / C),
        fleet="web",
        host="web-3",
        comm="worker",
        uid=1001,
        pid=99,
        timestamp="2025-11-24T16:00:00Z",
        size=30,
        mtime="2025-11-24T16:00:02Z",
        extra={"boot_id": BOOT, "retries": "2", "ticket": "OPS-7"},
    )


def test_collection_from_systemd_xattrs(tree) -> None:
    root, refused = tree
    if refused:
        pytest.skip(refused)
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(B))
    assert collection_for(obj) == Collection(
        source_url=str(root / B),
        host="db-1",
        comm="my app",
        exe="/usr/bin/myapp",
        uid=0,
        pid=78,
        signal=11,
        timestamp="2025-11-24T16:00:01.500000Z",
        size=20,
        mtime="2025-11-24T16:00:01Z",
        extra={
            "COREDUMP_GID": "0",
            "COREDUMP_RLIMIT": "18446744073709551615",
            "boot_id": BOOT,
        },
    )


def test_collection_precedence_sidecar_over_xattrs_over_name(tree) -> None:
    root, refused = tree
    if refused:
        pytest.skip(refused)
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(E))
    assert collection_for(obj) == Collection(
        source_url=str(root / E),
        host="sidecar-host",  # sidecar over xattr
        comm="svc",  # name only
        exe="/usr/bin/svc",  # xattr only
        uid=1000,
        pid=302,  # sidecar ("302") over xattr (301) over name (300)
        timestamp="2025-11-24T16:00:05Z",
        size=50,
        mtime="2025-11-24T16:00:05Z",
        extra={"boot_id": BOOT},
    )


def test_bad_sidecar_is_named_in_extra(tree) -> None:
    root, _ = tree
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(BAD))
    assert collection_for(obj) == Collection(
        source_url=str(root / BAD),
        comm="x",
        uid=1000,
        pid=1,
        timestamp="2025-11-24T16:00:04Z",
        size=5,
        mtime="2025-11-24T16:00:04Z",
        extra={
            "boot_id": BOOT,
            "sidecar_error": f"{Path(BAD).name}.json is not valid JSON: "
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        },
    )


@pytest.mark.parametrize(
    ("sidecar", "fields", "extra"),
    [
        ({"timestamp": 1764000000}, {"timestamp": "2025-11-24T16:00:00Z"}, {}),
        ({"timestamp": 1764000000250}, {"timestamp": "2025-11-24T16:00:00.250000Z"}, {}),
        ({"timestamp": "1764000000000001"}, {"timestamp": "2025-11-24T16:00:00.000001Z"}, {}),
        ({"timestamp": "2025-11-24T16:00:00"}, {"timestamp": "2025-11-24T16:00:00Z"}, {}),
        ({"signal": "SIGSEGV", "uid": "0"}, {"signal": 11, "uid": 0}, {}),
        ({"COREDUMP_HOSTNAME": "h", "COREDUMP_EXE": "/bin/x"}, {"host": "h", "exe": "/bin/x"}, {}),
        ({"host": "a", "hostname": "b"}, {"host": "a"}, {}),
        ({"note": None, "tags": ["a", "b"], "ok": True}, {}, {"ok": "true", "tags": '["a", "b"]'}),
        (
            {"pid": "abc", "signal": "SIGNOPE", "host": "h"},
            {"host": "h"},
            {
                "sidecar_error": 'pid: expected an integer, got "abc"; '
                'signal: unknown signal "SIGNOPE"'
            },
        ),
        ([1, 2], {}, {"sidecar_error": "core.json is not a JSON object"}),
    ],
)
def test_sidecar_values(tmp_path: Path, sidecar, fields, extra) -> None:
    core = tmp_path / "core"
    core.write_bytes(b"x")
    os.utime(core, ns=(T0 * 10**9, T0 * 10**9))
    (tmp_path / "core.json").write_text(json.dumps(sidecar))
    (obj,) = list_sources([str(tmp_path)])
    assert obj.sidecar_url == str(tmp_path / "core.json")
    assert collection_for(obj) == Collection(
        source_url=str(core), size=1, mtime="2025-11-24T16:00:00Z", extra=extra, **fields
    )


def test_unreadable_sidecar_does_not_raise(tmp_path: Path) -> None:
    core = tmp_path / "core"
    core.write_bytes(b"x")
    (tmp_path / "core.json").write_text("{}")
    (obj,) = list_sources([str(tmp_path)])
    (tmp_path / "core.json").unlink()
    assert collection_for(obj).extra == {
        "sidecar_error": "cannot read core.json: [Errno 2] No such file or directory: "
        f"'{tmp_path}/core.json'"
    }


# --------------------------------------------------------------------------------------------
# S3 (moto's server on 127.0.0.1)

BUCKET = "crashes"
PREFIX = "fleet-a"


@pytest.fixture(scope="module")
def s3():
    """(endpoint URL, storage options) of a fresh moto S3 server."""
    server = moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 0}},
        "skip_instance_cache": True,
    }
    yield endpoint, options
    server.stop()


def s3_client(endpoint: str, key: str = "testing", secret: str = "testing"):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def bucket(s3):
    """TREE uploaded to s3://crashes/fleet-a/ (with user metadata on A and C)."""
    endpoint, _ = s3
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    for rel, (content, _) in TREE.items():
        client.put_object(
            Bucket=BUCKET, Key=f"{PREFIX}/{rel}", Body=content, Metadata=METADATA.get(rel, {})
        )
    return client


def s3_expected(client) -> list[CoreObject]:
    out = []
    for rel in LISTED:
        url = f"s3://{BUCKET}/{PREFIX}/{rel}"
        content = TREE[rel][0]
        head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{rel}")
        etag = '"' + hashlib.md5(content).hexdigest() + '"'
        assert head["ETag"] == etag
        # moto keeps whole seconds; botocore gives them in local time
        mtime = head["LastModified"].astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        sidecar = f"s3://{BUCKET}/{PREFIX}/{SIDECARS[rel]}" if rel in SIDECARS else None
        out.append(
            CoreObject(url, len(content), etag, mtime, expected_id(url, 0, etag, None), sidecar, {})
        )
    return out


def test_s3_listing_is_exact(s3, bucket) -> None:
    _, options = s3
    expected = s3_expected(bucket)
    assert list(list_sources([f"s3://{BUCKET}/{PREFIX}/"], options)) == expected
    assert list(list_sources([f"s3://{BUCKET}/{PREFIX}"], options)) == expected
    assert list(list_sources([f"s3://{BUCKET}"], options)) == expected


def test_s3_single_object_source(s3, bucket) -> None:
    _, options = s3
    expected = next(o for o in s3_expected(bucket) if o.url.endswith(C))
    assert list(list_sources([expected.url], options)) == [expected]


def test_s3_core_id_stable_and_changes_with_the_object(s3, bucket) -> None:
    _, options = s3
    source = f"s3://{BUCKET}/{PREFIX}/nested/"
    first = list(list_sources([source], options))
    assert list(list_sources([source], options)) == first
    assert [o.core_id for o in first] == [
        expected_id(first[0].url, 0, '"' + hashlib.md5(b"N" * 7).hexdigest() + '"', None)
    ]
    bucket.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{NESTED}", Body=b"M" * 7)
    try:
        (changed,) = list(list_sources([source], options))
        etag = '"' + hashlib.md5(b"M" * 7).hexdigest() + '"'
        assert changed.etag == etag
        assert changed.core_id == expected_id(changed.url, 0, etag, None)
        assert changed.core_id != first[0].core_id
    finally:
        bucket.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{NESTED}", Body=TREE[NESTED][0])


def test_s3_collection_with_object_metadata(s3, bucket) -> None:
    _, options = s3
    obj = next(o for o in list_sources([f"s3://{BUCKET}/{PREFIX}/"], options) if o.url.endswith(A))
    assert collection_for(obj, options) == Collection(
        source_url=f"s3://{BUCKET}/{PREFIX}/{A}",
        fleet="web",
        host="web-7",
        comm="python3.12",
        exe="/usr/bin/python3.12",
        uid=1000,
        pid=4243,  # metadata over name (4242)
        timestamp="2025-11-24T16:00:00.123456Z",
        size=10,
        etag=obj.etag,
        mtime=obj.mtime,
        extra={"boot_id": BOOT, "ticket": "OPS-1"},
    )


def test_s3_collection_sidecar_over_metadata_over_name(s3, bucket) -> None:
    _, options = s3
    obj = next(o for o in list_sources([f"s3://{BUCKET}/{PREFIX}/"], options) if o.url.endswith(C))
    assert collection_for(obj, options) == Collection(
        source_url=f"s3://{BUCKET}/{PREFIX}/{C}",
        fleet="web",
        host="web-3",  # sidecar over metadata
        comm="meta-comm",  # metadata over name
        uid=1001,
        pid=99,
        signal=6,  # metadata "SIGABRT"
        timestamp="2025-11-24T16:00:00Z",
        size=30,
        etag=obj.etag,
        mtime=obj.mtime,
        extra={"boot_id": BOOT, "retries": "2", "ticket": "OPS-7"},
    )


def test_s3_collection_of_a_deleted_object_does_not_raise(s3, bucket) -> None:
    _, options = s3
    key = f"{PREFIX}/gone/core.py.1000.{BOOT}.7.1764000000000000"
    bucket.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    (obj,) = list(list_sources([f"s3://{BUCKET}/{PREFIX}/gone"], options))
    bucket.delete_object(Bucket=BUCKET, Key=key)
    assert collection_for(obj, options) == Collection(
        source_url=f"s3://{BUCKET}/{key}",
        comm="py",
        uid=1000,
        pid=7,
        timestamp="2025-11-24T16:00:00Z",
        size=1,
        etag=obj.etag,
        mtime=obj.mtime,
        extra={"boot_id": BOOT, "metadata_error": "cannot read the object's metadata: Not Found"},
    )


def test_s3_fetch_streams_identical_bytes(s3, bucket, tmp_path: Path) -> None:
    _, options = s3
    data = os.urandom(20 * 1024 * 1024 + 12345)  # three FETCH_CHUNK reads
    key = f"{PREFIX}/big/core.big"
    bucket.put_object(Bucket=BUCKET, Key=key, Body=data)
    try:
        (obj,) = list(list_sources([f"s3://{BUCKET}/{PREFIX}/big/"], options))
        dest = tmp_path / "dest"
        dest.mkdir()
        path = fetch(obj, str(dest), options)
        assert Path(path).parent == dest
        assert Path(path).read_bytes() == data
        assert read_head(obj, options) == data[: 256 * 1024]
        assert read_head(obj, options, size=100) == data[:100]
        os.unlink(path)
        assert list(dest.iterdir()) == []
        # changed since listed: refused, nothing left behind
        bucket.put_object(Bucket=BUCKET, Key=key, Body=data[:1000])
        with pytest.raises(SourceError) as err:
            fetch(obj, str(dest), options)
        assert err.value.kind == "changed"
        assert err.value.message == (
            f"s3://{BUCKET}/{key} changed since it was listed ({len(data)} bytes then, 1000 now)"
            "; the next sweep will take the new object"
        )
        assert list(dest.iterdir()) == []
        bucket.delete_object(Bucket=BUCKET, Key=key)
        with pytest.raises(SourceError) as err:
            fetch(obj, str(dest), options)
        assert (err.value.kind, err.value.message) == (
            "not_found",
            f"s3://{BUCKET}/{key} no longer exists (deleted since it was listed)",
        )
        assert list(dest.iterdir()) == []
    finally:
        bucket.delete_object(Bucket=BUCKET, Key=key)


def test_local_fetch_is_the_file_itself(tree, tmp_path: Path) -> None:
    root, _ = tree
    obj = next(o for o in list_sources([str(root)]) if o.url.endswith(A))
    assert fetch(obj, str(tmp_path)) == str(root / A)
    assert list(tmp_path.iterdir()) == []
    gone = CoreObject.make(str(tmp_path / "gone"), 1)
    with pytest.raises(SourceError) as err:
        fetch(gone, str(tmp_path))
    assert (err.value.kind, err.value.message) == (
        "not_found",
        f"{tmp_path}/gone no longer exists (deleted since it was listed)",
    )


# --------------------------------------------------------------------------------------------
# Sources that stop a sweep


def test_missing_directory(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(SourceError) as err:
        list(list_sources([missing]))
    assert (err.value.kind, err.value.message) == (
        "not_found",
        f"source {missing} does not exist; check the path or URL",
    )


def test_a_bad_source_stops_the_listing_before_anything_is_yielded(tree, tmp_path) -> None:
    root, _ = tree
    listing = list_sources([str(root), str(tmp_path / "nope")])
    with pytest.raises(SourceError):
        next(listing)


@pytest.mark.parametrize(
    "source", ["s3://no-such-bucket", "s3://no-such-bucket/x/", f"s3://{BUCKET}/no-such-prefix/"]
)
def test_missing_bucket_or_prefix(s3, bucket, source: str) -> None:
    _, options = s3
    with pytest.raises(SourceError) as err:
        list(list_sources([source], options))
    assert (err.value.kind, err.value.message) == (
        "not_found",
        f"source {source} does not exist; check the path or URL",
    )


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return port


def test_unreachable_endpoint_fails_fast() -> None:
    port = closed_port()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 0}, "connect_timeout": 2},
        "skip_instance_cache": True,
    }
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        list(list_sources([f"s3://{BUCKET}/{PREFIX}/"], options))
    assert time.monotonic() - started < 10
    assert (err.value.kind, err.value.message) == (
        "unreachable",
        f"source s3://{BUCKET}/{PREFIX}/ is unreachable (Could not connect to the endpoint URL: "
        f'"http://127.0.0.1:{port}/{BUCKET}/{PREFIX}"); check the endpoint URL and the network',
    )


@pytest.fixture
def iam_enforced(s3, bucket):
    """Moto checks credentials (IAM) while the test runs; yields (key, secret) of a user
    allowed s3:* and (key, secret) of a user allowed nothing."""
    endpoint, _ = s3
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    users = {}
    for name, policy in (("sweeper", "s3:*"), ("nobody", None)):
        if name not in [u["UserName"] for u in iam.list_users()["Users"]]:
            iam.create_user(UserName=name)
        if policy:
            document = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": policy, "Resource": "*"}],
            }
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    # moto's documented switch: authenticate every request from now on (process-wide)
    answer = requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
    answer.raise_for_status()
    try:
        yield users
    finally:
        previous = answer.json()["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
        requests.post(f"{endpoint}/moto-api/reset-auth", data=previous.encode(), timeout=10)


def with_credentials(options: dict, key: str, secret: str) -> dict:
    return {**options, "key": key, "secret": secret}


def test_credentials_are_checked_up_front(s3, bucket, iam_enforced) -> None:
    _, options = s3
    source = f"s3://{BUCKET}/{PREFIX}/"
    good = with_credentials(options, *iam_enforced["sweeper"])
    assert [o.url for o in list_sources([source], good)] == [
        f"s3://{BUCKET}/{PREFIX}/{rel}" for rel in LISTED
    ]
    denied = (
        f"source {source} rejected the credentials or denied access (Forbidden); check the "
        "storage options or the credentials in the environment, and the right to list it"
    )
    for key, secret in (
        ("AKIAWRONGWRONGWRONG0", "whatever"),  # unknown access key
        (iam_enforced["sweeper"][0], "wrong-secret"),  # bad signature
        iam_enforced["nobody"],  # valid credentials, no right to read
    ):
        with pytest.raises(SourceError) as err:
            next(list_sources([source], with_credentials(options, key, secret)))
        assert (err.value.kind, err.value.message) == ("permission_denied", denied)


# --------------------------------------------------------------------------------------------
# Recognising cores by content


@pytest.fixture(scope="module")
def real_core(cores, interpreters, tmp_path_factory) -> dict[str, bytes]:
    """The first 64 KiB of a real gcore core, plain and in every compression."""
    if not interpreters:
        pytest.skip("no Python interpreter on this machine")
    # the interpreter other tests use most, so that a full run makes this core only once
    interp = preferred_interpreter(interpreters, [(3, 12), (3, 8)]) or interpreters[0]
    case = cores.gcore(interp)
    directory = tmp_path_factory.mktemp("sniff")
    heads = {}
    with open(case.path, "rb") as f:
        heads["none"] = f.read(64 * 1024)
    for fmt, suffix in COMPRESSION_SUFFIXES.items():
        path = compress(case.path, fmt, directory / ("core" + suffix))
        with open(path, "rb") as f:
            heads[fmt] = f.read(64 * 1024)
        assert os.path.getsize(path) > 64 * 1024  # only a head is given
        os.unlink(path)
    yield heads
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["none", *COMPRESSION_SUFFIXES])
def test_sniff_real_core(real_core, fmt: str) -> None:
    assert sniff_core(real_core[fmt]) == (fmt, None)


def compressed(data: bytes, fmt: str) -> bytes:
    if fmt == "gzip":
        return gzip.compress(data)
    if fmt == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    if fmt == "xz":
        import lzma

        return lzma.compress(data)
    import lz4.frame

    return lz4.frame.compress(data)


def shared_library() -> bytes:
    with open(_ctypes.__file__, "rb") as f:
        return f.read(64 * 1024)


def an(fmt: str) -> str:
    return f"an {fmt}" if fmt in ("xz", "lz4") else f"a {fmt}"


def test_sniff_junk(real_core) -> None:
    text = b"just some text\n" * 100
    library = shared_library()
    core = real_core["none"]
    assert sniff_core(b"") == ("none", "an empty file")
    assert sniff_core(text) == ("none", "not an ELF file")
    assert sniff_core(library) == ("none", "an ELF shared library, not a core")
    assert sniff_core(core[:10]) == ("none", "a truncated ELF file (10 bytes)")
    assert sniff_core(core[:4] + b"\x01" + core[5:]) == (
        "none",
        "a 32-bit ELF core; only 64-bit cores are supported",
    )
    assert sniff_core(b"\x1f\x8b" + b"\x00" * 30) == (
        "gzip",
        "a gzip archive that cannot be decompressed (Unknown compression method)",
    )


def test_sniff_pie_executable() -> None:
    ls = Path(shutil.which("ls") or "/bin/ls").resolve().read_bytes()[: 64 * 1024]
    if ls[16] != 3:
        pytest.skip("ls is not built as a position-independent executable here")
    assert sniff_core(ls) == ("none", "an ELF executable (position-independent), not a core")


@pytest.mark.parametrize("fmt", list(COMPRESSION_SUFFIXES))
def test_sniff_compressed_junk(fmt: str) -> None:
    library = compressed(shared_library(), fmt)
    assert sniff_core(compressed(b"just some text\n" * 100, fmt)) == (
        fmt,
        f"{an(fmt)} archive of something that is not a core",
    )
    assert sniff_core(library) == (fmt, f"{an(fmt)} archive of an ELF shared library, not a core")
    assert sniff_core(compressed(b"", fmt)) == (fmt, f"{an(fmt)} archive of nothing")
    assert sniff_core(library[:30]) == (
        fmt,
        f"{an(fmt)} archive whose first 30 bytes are too few to decompress anything; "
        "read more of it",
    )
    # gzip and xz stream: a few KiB show what the archive holds; zstd and lz4 need a block
    expected = (
        f"{an(fmt)} archive of an ELF shared library, not a core"
        if fmt in ("gzip", "xz")
        else f"{an(fmt)} archive whose first 4000 bytes are too few to decompress anything; "
        "read more of it"
    )
    assert sniff_core(library[:4000]) == (fmt, expected)


@pytest.mark.parametrize(
    ("head", "fmt", "detail"),
    [
        (
            b"\x28\xb5\x2f\xfd" + b"\xff" * 40,
            "zstd",
            "zstd decompress error: Unsupported frame parameter",
        ),
        (
            b"\x04\x22\x4d\x18" + b"\xff" * 40,
            "lz4",
            "LZ4F_decompress failed with code: ERROR_reservedFlag_set",
        ),
        (b"\xfd7zXZ\x00" + b"\xff" * 40, "xz", "Corrupt input data"),
    ],
)
def test_sniff_damaged_archives(head: bytes, fmt: str, detail: str) -> None:
    assert sniff_core(head) == (fmt, f"{an(fmt)} archive that cannot be decompressed ({detail})")
