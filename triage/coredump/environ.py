"""The dead process's environment, as its C library last saw it (`environ`), so that changes
made at run time (pytest's PYTEST_CURRENT_TEST, os.environ[...] = ...) are included."""

from __future__ import annotations

import re

from triage.coredump.images import LoadedImage
from triage.coredump.memory import CoreMemory
from triage.coredump.symbols import load_symbols
from triage.errors import AddressError

_LIBC = re.compile(r"^libc(\.so\.\d+|-[\d.]+\.so)$")
MAX_VARIABLES = 20_000


def read_environment(
    memory: CoreMemory, images: list[LoadedImage], files: dict[str, str]
) -> dict[str, str]:
    """NAME -> value from libc's `environ`; empty when libc or its symbol cannot be read."""
    for image in images:
        if not _LIBC.match(image.path.rsplit("/", 1)[-1]) or image.path not in files:
            continue
        try:
            syms = load_symbols(files[image.path])
        except (OSError, ValueError):
            return {}
        value = syms.address_of("__environ")
        if value is None:
            value = syms.address_of("environ")
        if value is None:
            return {}
        bias = syms.load_bias(image.start)
        try:
            return _strings(memory, memory.u64(bias + value))
        except AddressError:
            return {}
    return {}


def _strings(memory: CoreMemory, array: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(MAX_VARIABLES):
        ptr = memory.u64(array + 8 * i)
        if not ptr:
            break
        try:
            raw = memory.cstring(ptr, 1 << 16)
        except AddressError:
            continue
        name, sep, value = raw.decode("utf-8", "surrogateescape").partition("=")
        if sep:
            out.setdefault(name, value)
    return out


def current_test(environment: dict[str, str]) -> str | None:
    """The pytest test id that was running ("path::test" without the " (call)" phase)."""
    value = environment.get("PYTEST_CURRENT_TEST")
    if not value:
        return None
    return re.sub(r" \((setup|call|teardown)\)$", "", value)
