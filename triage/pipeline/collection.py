"""What a collection says about a core: its row's `collection` (host, comm, exe, pid, uid,
signal, timestamp, fleet, and the rest in `extra`), from four places; where two say
something about the same field, the first of these wins:

1. the sidecar `<core>.json`;
2. systemd-coredump's extended attributes `user.coredump.*` (local files only);
3. the object's metadata in the store (S3 user metadata `x-amz-meta-*`, ...);
4. systemd-coredump's file name `core.COMM.UID.BOOTID.PID.USEC[.zst|.xz|.lz4]`.

The sidecar and the object metadata use the keys host (or hostname), comm, exe, pid, uid,
signal, timestamp and fleet, matched without regard to case, `-` or `_`; the journal's names
(COREDUMP_HOSTNAME, COREDUMP_EXE, COREDUMP_COMM, COREDUMP_PID, COREDUMP_UID, COREDUMP_SIGNAL,
COREDUMP_TIMESTAMP) are understood too. Other keys go to `Collection.extra` as they are.
Extended attributes other than those fields go to extra under their journal names
(`user.coredump.gid` -> COREDUMP_GID, `user.coredump.rlimit` -> COREDUMP_RLIMIT); the boot id
of the file name goes to extra as `boot_id`. A part that cannot be read or understood is
named in extra as `sidecar_error`, `xattr_error` or `metadata_error` (one line) and the rest
still counts.

Timestamps are written as ISO 8601 in UTC (`2025-11-24T16:00:00.123456Z`). A timestamp given
as a number is read by its size: seconds below 1e11, milliseconds below 1e14, microseconds
below 1e17 (systemd's unit), else nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from triage.coredump.signals import signal_number
from triage.errors import error_detail
from triage.pipeline.sources import (
    EPOCH,
    CoreObject,
    filesystem_of,
    is_local_url,
    iso_utc,
    local_path,
    normalise_metadata,
    parse_iso,
)
from triage.report import Collection

#: A sidecar larger than this is not read.
SIDECAR_MAX = 1024 * 1024


_SYSTEMD_NAME = re.compile(
    r"core\.(?P<comm>[^.]*)\.(?P<uid>\d+)\.(?P<boot_id>[0-9a-f]{32})\.(?P<pid>\d+)"
    r"\.(?P<usec>\d+)(?:\.(?:zst|xz|lz4|gz))?"
)
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    """Undo systemd's xescape(): every `\\xNN` is the byte NN (the bytes are UTF-8)."""
    raw = text.encode("utf-8", "surrogateescape")
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    return raw.decode("utf-8", "backslashreplace")


def parse_systemd_name(name: str) -> dict[str, Any] | None:
    """What systemd-coredump's file name says, or None for another name.

    `core.COMM.UID.BOOTID.PID.USEC[.zst|.xz|.lz4]`, where COMM has `.`, `/`, space, `\\` and
    unprintable bytes written as `\\xNN`. Returns {comm, uid, boot_id, pid, timestamp}."""
    match = _SYSTEMD_NAME.fullmatch(os.path.basename(name))
    if match is None:
        return None
    try:
        timestamp = iso_utc(EPOCH + dt.timedelta(microseconds=int(match["usec"])))
    except OverflowError:
        return None
    return {
        "comm": _unescape(match["comm"]),
        "uid": int(match["uid"]),
        "boot_id": match["boot_id"],
        "pid": int(match["pid"]),
        "timestamp": timestamp,
    }


#: Collection field -> the keys that give it (normalised: lower case, `-` as `_`), in order.
_ALIASES: dict[str, tuple[str, ...]] = {
    "fleet": ("fleet",),
    "host": ("host", "hostname", "coredump_hostname"),
    "comm": ("comm", "coredump_comm"),
    "exe": ("exe", "coredump_exe"),
    "uid": ("uid", "coredump_uid"),
    "pid": ("pid", "coredump_pid"),
    "signal": ("signal", "coredump_signal"),
    "timestamp": ("timestamp", "coredump_timestamp"),
}
_KNOWN = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_FIELDS = tuple(_ALIASES)


@dataclass
class _Layer:
    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


def _norm_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def _layer_from_mapping(data: dict[str, Any], layer: str) -> _Layer:
    """Fields and extras of one key/value source; bad values are named in extra[layer_error]."""
    out = _Layer()
    problems: list[str] = []
    chosen: dict[str, tuple[int, str, Any]] = {}
    for key, value in data.items():
        name = _KNOWN.get(_norm_key(str(key)))
        if name is None:
            if value is not None:
                out.extra[str(key)] = (
                    value
                    if isinstance(value, str)
                    else json.dumps(value, ensure_ascii=False, sort_keys=True)
                )
            continue
        rank = _ALIASES[name].index(_norm_key(str(key)))
        if value is None or (name in chosen and chosen[name][0] <= rank):
            continue
        chosen[name] = (rank, str(key), value)
    for name in _FIELDS:
        if name not in chosen:
            continue
        _, key, value = chosen[name]
        try:
            out.fields[name] = _convert(name, value)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        out.extra[f"{layer}_error"] = "; ".join(problems)
    return out


def _convert(name: str, value: Any) -> Any:
    if name in ("uid", "pid"):
        return _to_int(value)
    if name == "signal":
        return _to_signal(value)
    if name == "timestamp":
        return _to_timestamp(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {json.dumps(value)}")
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer, got {json.dumps(value)}")
    if isinstance(value, int):
        return value
    text = value.strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"expected an integer, got {json.dumps(value)}")
    return int(text)


def _to_signal(value: Any) -> int:
    if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        return signal_number(value)  # SIGSEGV, SEGV, SIGRTMIN+2; ValueError says which
    return _to_int(value)


def _to_timestamp(value: Any) -> str:
    """ISO 8601 UTC from an ISO string or an epoch number (unit guessed by size)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time, got {json.dumps(value)}")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        value = float(value) if "." in value else int(value)
    if isinstance(value, (int, float)):
        magnitude = abs(value)
        scale: float  # microseconds per unit: seconds, milliseconds, microseconds, nanoseconds
        if magnitude < 1e11:
            scale = 1_000_000
        elif magnitude < 1e14:
            scale = 1_000
        elif magnitude < 1e17:
            scale = 1
        else:
            scale = 0.001
        try:
            return iso_utc(EPOCH + dt.timedelta(microseconds=round(value * scale)))
        except OverflowError:
            raise ValueError(f"time out of range: {json.dumps(value)}") from None
    if isinstance(value, str):
        try:
            return iso_utc(parse_iso(value))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time nor an epoch: {json.dumps(value)}") from None
    raise ValueError(f"expected a time, got {json.dumps(value)}")


def _name_layer(obj: CoreObject) -> _Layer:
    parsed = parse_systemd_name(obj.url.rstrip("/").rsplit("/", 1)[-1])
    if parsed is None:
        return _Layer()
    boot_id = parsed.pop("boot_id")
    return _Layer(fields=parsed, extra={"boot_id": boot_id})


def _xattr_layer(obj: CoreObject) -> _Layer:
    if not obj.is_local or not hasattr(os, "listxattr"):
        return _Layer()
    try:
        path = local_path(obj.url)
        names = [n for n in os.listxattr(path) if n.startswith("user.coredump.")]
        raw = {n: os.getxattr(path, n) for n in names}
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA, errno.ENOENT):
            return _Layer()
        return _Layer(extra={"xattr_error": f"cannot read extended attributes: {exc.strerror}"})
    data = {
        "COREDUMP_" + n[len("user.coredump.") :].upper(): v.decode("utf-8", "backslashreplace")
        for n, v in sorted(raw.items())
    }
    return _layer_from_mapping(data, "xattr")


def _metadata_layer(obj: CoreObject, storage_options: dict[str, Any] | None) -> _Layer:
    metadata = obj.metadata
    if not metadata and not obj.is_local:
        try:
            fs, path, _ = filesystem_of(obj.url, storage_options)
            if hasattr(fs, "metadata"):
                metadata = fs.metadata(path)
            else:
                info = fs.info(path)
                metadata = info.get("metadata") or info.get("Metadata") or {}
            metadata = normalise_metadata(metadata if isinstance(metadata, dict) else {})
        except Exception as exc:
            return _Layer(
                extra={"metadata_error": f"cannot read the object's metadata: {error_detail(exc)}"}
            )
    return _layer_from_mapping(dict(sorted(metadata.items())), "metadata")


def _sidecar_layer(obj: CoreObject, storage_options: dict[str, Any] | None) -> _Layer:
    if obj.sidecar_url is None:
        return _Layer()
    name = obj.sidecar_url.rsplit("/", 1)[-1]
    try:
        if is_local_url(obj.sidecar_url):
            with open(local_path(obj.sidecar_url), "rb") as f:
                raw = f.read(SIDECAR_MAX + 1)
        else:
            fs, path, _ = filesystem_of(obj.sidecar_url, storage_options)
            raw = fs.cat_file(path, start=0, end=SIDECAR_MAX + 1)
    except Exception as exc:
        return _Layer(extra={"sidecar_error": f"cannot read {name}: {error_detail(exc)}"})
    if len(raw) > SIDECAR_MAX:
        return _Layer(extra={"sidecar_error": f"{name} is larger than {SIDECAR_MAX} bytes"})
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _Layer(extra={"sidecar_error": f"{name} is not UTF-8 text"})
    except json.JSONDecodeError as exc:
        return _Layer(extra={"sidecar_error": f"{name} is not valid JSON: {exc}"})
    if not isinstance(data, dict):
        return _Layer(extra={"sidecar_error": f"{name} is not a JSON object"})
    return _layer_from_mapping(data, "sidecar")


def collection_for(obj: CoreObject, storage_options: dict[str, Any] | None = None) -> Collection:
    """Where and how `obj` was collected, from its sidecar, xattrs, object metadata and name
    (in that order of precedence). Never raises: a part that cannot be read is named in
    extra (sidecar_error, xattr_error, metadata_error). For a remote object this costs up to
    two requests: a HEAD for the metadata (unless the listing gave it) and a GET of the
    sidecar (if any)."""
    layers: list[_Layer] = []
    for make in (
        lambda: _name_layer(obj),
        lambda: _metadata_layer(obj, storage_options),
        lambda: _xattr_layer(obj),
        lambda: _sidecar_layer(obj, storage_options),
    ):
        try:
            layers.append(make())
        except Exception as exc:  # never raise: a bug in one part must not lose the row
            layers.append(_Layer(extra={"collection_error": error_detail(exc)}))
    fields: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for layer in layers:  # lowest precedence first
        fields.update({k: v for k, v in layer.fields.items() if v is not None})
        extra.update(layer.extra)
    return Collection(
        source_url=obj.url,
        size=obj.size,
        etag=obj.etag,
        mtime=obj.mtime,
        extra=dict(sorted(extra.items())),
        **fields,
    )
