"""Sizes in bytes as people write and read them: `20G`, `512M`, `1.5T`; `8.0 GiB`."""

from __future__ import annotations

import re

_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as `20G`, `512m`, `1.5TiB`, `4096` (powers of 1024; a bare number
    is bytes). ValueError, saying what is expected, for anything else."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a size; give a number of bytes with an optional unit, "
            f"K, M, G or T (powers of 1024), e.g. 20G"
        )
    number, unit = match.groups()
    return int(float(number) * (1 << (10 * _UNITS[unit.upper()])))


def format_size(size: int) -> str:
    """`8.0 GiB`, `494.2 KiB`, `512 bytes`: one decimal from KiB on."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
