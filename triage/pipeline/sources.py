"""Where the sweep finds cores: local directories and fsspec URLs (s3://, gs://, file://, ...).

    for obj in list_sources(["/var/lib/systemd/coredump", "s3://crashes/web/"], options):
        ...                                  # cheap: names, sizes, etags; no content read
    compression, problem = sniff_core(read_head(obj, options))   # triage.coredump.sniff
    path = fetch(obj, tmpdir, options)       # local path of the core (a temp copy if remote)
    collection = collection_for(obj, options)                  # triage.pipeline.collection

Listing never reads an object: a core is recognised later by content (`sniff_core` on the
first bytes), so a source may hold anything. Skipped while listing: names starting with "."
or "_" anywhere below the source (hidden files, writers' temporaries, `_SUCCESS`), and
sidecars (`X.json` next to a listed `X`, which becomes `X`'s `sidecar_url`).

`core_id` is the first 32 hex digits of the SHA-256 of `url + "\\n" + etag` when the store
gives an etag, else of `url + "\\n" + str(size) + "\\n" + (mtime or "")`: the same object
keeps its id from one listing to the next and gets a new one when it changes.

What a collection says about each core (sidecar, extended attributes, object metadata,
systemd-coredump's file name) is read by `triage.pipeline.collection`; whether an object is
a core at all, from its first bytes, by `triage.coredump.sniff`.

Only this module and `collection` import fsspec, on first use.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from triage.errors import TriageError, error_detail
from triage.kinds import ErrorKind

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: How many bytes of an object `read_head` reads for `sniff_core`: enough for the first block
#: of any zstd frame (128 KiB) and of lz4 frames with blocks up to 64 KiB (lz4's default),
#: plus their headers. gzip and xz decompress from far fewer bytes.
HEAD_SIZE = 256 * 1024
#: Bytes per read when copying a remote object to a local file.
FETCH_CHUNK = 8 * 1024 * 1024

_LOCAL_PROTOCOLS = ("file", "local")
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


class SourceError(TriageError):
    """A source or an object in it cannot be read. The message is one line naming the source
    and what to do; `kind` is one of not_found, permission_denied, unreachable, changed,
    unreadable."""

    def __init__(self, message: str, kind: ErrorKind = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class CoreObject:
    """One file of a source that may be a core (nothing of its content has been read)."""

    url: str
    """Absolute path for a local file; `proto://bucket/key` for a remote object."""
    size: int
    etag: str | None
    """The store's entity tag as it gives it (S3: with its double quotes); None locally."""
    mtime: str | None
    """Last-modified time, ISO 8601 UTC."""
    core_id: str
    sidecar_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    """Object metadata the listing gave (lower-case keys, no `x-amz-meta-` prefix). S3
    listings give none; `collection_for` asks the store."""
    problem: tuple[ErrorKind, str] | None = None
    """(status, what is wrong) of an entry that is not a file to read, found while listing
    (a FIFO, a socket, a device: `not_core`; a symbolic link loop or one to nothing:
    `unreadable`): its row says so, and nothing opens it."""

    @classmethod
    def make(
        cls,
        url: str,
        size: int,
        etag: str | None = None,
        mtime: str | None = None,
        sidecar_url: str | None = None,
        metadata: dict[str, str] | None = None,
        problem: tuple[ErrorKind, str] | None = None,
    ) -> CoreObject:
        return cls(
            url,
            size,
            etag,
            mtime,
            core_id(url, size, etag, mtime),
            sidecar_url,
            dict(metadata or {}),
            problem,
        )

    @property
    def is_local(self) -> bool:
        return is_local_url(self.url)


def printable(text: str) -> str:
    """`text` as valid UTF-8: a file name's bytes that are not UTF-8 (held as surrogates, as
    os.fsdecode gives them) written as `\\xNN` escapes; other text as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def core_id(url: str, size: int, etag: str | None, mtime: str | None) -> str:
    """The deterministic identity of a core object (see the module docstring)."""
    key = f"{url}\n{etag}" if etag else f"{url}\n{size}\n{mtime or ''}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# Listing


@dataclass
class _Source:
    given: str
    fs: AbstractFileSystem
    path: str
    local: bool
    info: dict[str, Any]


def is_local_url(url: str) -> bool:
    return _protocol_of(url) in _LOCAL_PROTOCOLS


def local_path(url: str) -> str:
    """The path of a local URL (a plain path, or file:// / local://)."""
    return url.split("://", 1)[1] if "://" in url else url


def local_path_of(url: str) -> str | None:
    """The path of a local URL (a plain path, file:// or local://); None for a remote one."""
    return local_path(url) if is_local_url(url) else None


def _protocol_of(url: str) -> str:
    if "://" in url:
        return url.split("://", 1)[0].lower()
    return "file"


def filesystem_of(
    url: str, storage_options: dict[str, Any] | None
) -> tuple[AbstractFileSystem, str, bool]:
    """(filesystem, path within it, is local) for a path or URL. Local paths get no options."""
    from fsspec.core import url_to_fs

    protocol = _protocol_of(url)
    if protocol in _LOCAL_PROTOCOLS:
        fs, path = url_to_fs(url)
        return fs, path, True
    fs, path = url_to_fs(url, **(storage_options or {}))
    return fs, path, False


def _canonical(fs: AbstractFileSystem, path: str, local: bool) -> str:
    if local:
        return os.path.abspath(path)
    return fs.unstrip_protocol(path)


def _is_connection_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        name = type(exc).__name__
        if (
            isinstance(exc, (ConnectionError, TimeoutError))
            or "Connect" in name
            or ("Timeout" in name)
        ):
            return True
        if isinstance(exc, OSError) and exc.errno in (
            errno.ECONNREFUSED,
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
            errno.ETIMEDOUT,
        ):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _source_error(source: str, exc: BaseException, doing: str = "list") -> SourceError:
    """The one-line SourceError for an exception met while reaching `source`."""
    detail = error_detail(exc)
    name = type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"source {source} does not exist; check the path or URL", "not_found")
    if isinstance(exc, PermissionError) or "Credentials" in name:
        return SourceError(
            f"source {source} rejected the credentials or denied access ({detail}); check the "
            f"storage options or the credentials in the environment, and the right to {doing} it",
            "permission_denied",
        )
    if _is_connection_error(exc):
        return SourceError(
            f"source {source} is unreachable ({detail}); check the endpoint URL and the network",
            "unreachable",
        )
    return SourceError(f"cannot {doing} source {source}: {name}: {detail}", "unreadable")


def _open_source(source: str, storage_options: dict[str, Any] | None) -> _Source:
    try:
        fs, path, local = filesystem_of(source, storage_options)
    except Exception as exc:  # unknown protocol, missing driver, bad options
        raise SourceError(
            f"cannot open source {source}: {type(exc).__name__}: {error_detail(exc)}",
            "unreadable",
        ) from None
    try:
        fs.invalidate_cache(path)
        info = fs.info(path)
    except Exception as exc:
        raise _source_error(source, exc) from None
    if info.get("type") not in ("file", "directory"):
        raise SourceError(
            f"source {source} is neither a directory nor a regular file", "unreadable"
        )
    return _Source(source, fs, path, local, info)


def check_sources(sources: list[str], storage_options: dict[str, Any] | None = None) -> None:
    """Raise SourceError for the first source that does not exist, is unreachable or rejects
    the credentials (one cheap call per source: an info/HEAD, not a listing)."""
    for source in sources:
        _open_source(source, storage_options)


def list_sources(
    sources: list[str], storage_options: dict[str, Any] | None = None
) -> Iterator[CoreObject]:
    """Every file of `sources` that may be a core, sorted by URL, each once.

    All sources are checked (see `check_sources`) when iteration starts, before the first
    object is yielded, so a bad source stops a sweep before any work.
    """
    opened = [_open_source(source, storage_options) for source in sources]
    found: dict[str, CoreObject] = {}
    for src in opened:
        for obj in _list_one(src):
            found.setdefault(obj.url, obj)
    for url in sorted(found):
        yield found[url]


def _list_one(src: _Source) -> list[CoreObject]:
    fs, root = src.fs, src.path
    if src.info.get("type") == "file":
        sidecar = None
        with contextlib.suppress(Exception):
            if fs.isfile(root + ".json"):
                sidecar = _canonical(fs, root + ".json", src.local)
        return [_core_object(fs, root, src.info, src.local, sidecar)]
    try:
        entries = fs.find(root, detail=True)
    except Exception as exc:
        raise _source_error(src.given, exc) from None
    prefix = root.rstrip("/") + "/"
    files: dict[str, dict[str, Any]] = {}
    for name, info in entries.items():
        if name.endswith("/") or not name.startswith(prefix):
            continue
        relative = name[len(prefix) :]
        if any(part[:1] in (".", "_") for part in relative.split("/")):
            continue
        info = _regular_file_info(name, info, src.local)
        if info is not None:
            files[name] = info
    out = []
    for name, info in files.items():
        if name.endswith(".json") and name[: -len(".json")] in files:
            continue
        sidecar = name + ".json"
        sidecar_url = _canonical(fs, sidecar, src.local) if sidecar in files else None
        out.append(_core_object(fs, name, info, src.local, sidecar_url))
    return out


def _regular_file_info(name: str, info: dict[str, Any], local: bool) -> dict[str, Any] | None:
    """The info of a regular file (a local symlink stands for its target); for a local entry
    that is no such file nor a directory, an info whose `problem` says what it is; else
    None (directories, and links to them, which are not followed)."""
    if info.get("type") == "file":
        return info
    if not local or info.get("type") == "directory":
        return None
    try:
        st = os.stat(name)
    except OSError as exc:
        return _problem_info(name, info, "unreadable", _link_problem(name, exc))
    if stat.S_ISREG(st.st_mode):
        return {"name": name, "type": "file", "size": st.st_size, "mtime": st.st_mtime}
    if stat.S_ISDIR(st.st_mode):
        return None
    kind = next((what for test, what in _SPECIAL_FILES if test(st.st_mode)), "not a regular file")
    return _problem_info(name, info, "not_core", f"{kind}, not a file that can hold a core")


#: What a special file is, by its mode.
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _link_problem(name: str, exc: OSError) -> str:
    """Why `os.stat` of a listed entry (a symbolic link, mostly) failed, in words."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop (too many levels of symbolic links); fix or remove the link"
    if exc.errno == errno.ENOENT:
        try:
            target = os.readlink(name)
        except OSError:
            return "no longer exists (deleted since it was listed)"
        return f"a symbolic link to {target}, which does not exist"
    return f"cannot be read: {exc.strerror or error_detail(exc)}"


def _problem_info(
    name: str, info: dict[str, Any], status: ErrorKind, message: str
) -> dict[str, Any]:
    mtime = None
    with contextlib.suppress(OSError):
        mtime = os.lstat(name).st_mtime
    return {"name": name, "type": "file", "size": 0, "mtime": mtime, "problem": (status, message)}


def _core_object(
    fs: AbstractFileSystem, path: str, info: dict[str, Any], local: bool, sidecar: str | None
) -> CoreObject:
    url = _canonical(fs, path, local)
    etag = None if local else _first(info, "ETag", "etag", "Etag")
    metadata = {}
    for key in ("metadata", "Metadata"):
        if isinstance(info.get(key), dict):
            metadata = normalise_metadata(info[key])
            break
    return CoreObject.make(
        url=url,
        size=int(info.get("size") or 0),
        etag=str(etag) if etag else None,
        mtime=_info_mtime(info),
        sidecar_url=sidecar,
        metadata=metadata,
        problem=info.get("problem"),
    )


def _first(info: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if info.get(key) not in (None, ""):
            return info[key]
    return None


def _info_mtime(info: dict[str, Any]) -> str | None:
    value = _first(info, "mtime", "LastModified", "last_modified", "updated", "modified")
    if value is None:
        return None
    try:
        if isinstance(value, dt.datetime):
            return iso_utc(value)
        if isinstance(value, (int, float)):
            return iso_utc(dt.datetime.fromtimestamp(value, UTC))
        return iso_utc(parse_iso(str(value)))
    except (ValueError, OverflowError, OSError):
        return None


def normalise_metadata(meta: dict[Any, Any]) -> dict[str, str]:
    out = {}
    for key, value in meta.items():
        name = str(key).lower()
        if name.startswith("x-amz-meta-"):
            name = name[len("x-amz-meta-") :]
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


# --------------------------------------------------------------------------------------------
# Content


def read_head(
    obj: CoreObject, storage_options: dict[str, Any] | None = None, size: int = HEAD_SIZE
) -> bytes:
    """The first `size` bytes of the object (one ranged read); errors -> SourceError."""
    try:
        if obj.is_local:
            return _read_local_head(local_path(obj.url), size)
        if obj.size == 0:
            return b""  # S3 refuses a ranged read of an empty object
        fs, path, _ = filesystem_of(obj.url, storage_options)
        return fs.cat_file(path, start=0, end=min(size, obj.size) if obj.size else size)
    except SourceError:
        raise
    except Exception as exc:
        raise _object_error(obj.url, exc) from None


def _read_local_head(path: str, size: int) -> bytes:
    """The first `size` bytes of a local regular file. Opened without blocking, so that a
    FIFO put where a file was listed does not hang the reader; anything but a regular file
    is refused (SourceError, unreadable)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(f"{path} is not a regular file (a FIFO, socket or device)")
        os.set_blocking(fd, True)
        return f.read(size)


def _object_error(url: str, exc: BaseException) -> SourceError:
    """The SourceError for one object that could not be read."""
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{url} no longer exists (deleted since it was listed)", "not_found")
    if is_local_url(url) and isinstance(exc, OSError):
        kind: ErrorKind = "permission_denied" if isinstance(exc, PermissionError) else "unreadable"
        return SourceError(f"cannot read {url}: {exc.strerror or error_detail(exc)}", kind)
    err = _source_error(url, exc, doing="read")
    return SourceError(err.message.replace(f"source {url}", url, 1), err.kind)


def fetch(obj: CoreObject, dest_dir: str, storage_options: dict[str, Any] | None = None) -> str:
    """A local path to read the core from: the file itself when local; else a new file in
    `dest_dir` the object is streamed into (FETCH_CHUNK at a time), which the caller deletes.
    Errors (and an object whose size changed since it was listed) -> SourceError."""
    if obj.is_local:
        path = local_path(obj.url)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise _object_error(obj.url, exc) from None
        return path
    base = re.sub(r"[^A-Za-z0-9._-]", "_", obj.url.rstrip("/").rsplit("/", 1)[-1])[-80:]
    fd, tmp = tempfile.mkstemp(
        prefix=f"triage-{obj.core_id[:12]}-", suffix=f"-{base}", dir=dest_dir
    )
    try:
        with os.fdopen(fd, "wb") as out:
            fs, path, _ = filesystem_of(obj.url, storage_options)
            with fs.open(path, "rb", block_size=FETCH_CHUNK, cache_type="none") as src:
                while True:
                    chunk = src.read(FETCH_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
            got = out.tell()
        if got != obj.size:
            raise SourceError(
                f"{obj.url} changed since it was listed ({obj.size} bytes then, {got} now); "
                "the next sweep will take the new object",
                "changed",
            )
        return tmp
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, SourceError) or not isinstance(exc, Exception):
            raise
        raise _object_error(obj.url, exc) from None


def iso_utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> dt.datetime:
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
