"""Every string of a report is valid Unicode: what a dead process's bytes could not decode to
is escaped, the same way wherever it comes from.

Readers keep the strings as Python itself holds them: a 2.7 `str` or a path of bytes that are
not UTF-8 decodes with `surrogateescape` (byte 0xff -> U+DCFF), as Python 3 decodes file names
(`co_filename` of a script in such a directory holds U+DCFF itself), and a UCS-2 string may
hold a lone surrogate. Such text can be encoded neither as UTF-8 (a JSON parser refuses it)
nor on most terminals, so the report shows it escaped:

* an undecodable byte, i.e. U+DC80..U+DCFF, as `\\xNN` (the byte, as Python's repr of bytes
  shows it): `caf\\xe9` for the Latin-1 bytes of `café`;
* any other lone surrogate as `\\uNNNN`: `\\ud800`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def valid_text(text: str) -> str:
    """`text` with its lone surrogates escaped (see the module); itself when it has none."""
    if text.isascii():
        return text
    return _SURROGATE.sub(_escape, text)


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def unescaped_path(text: str) -> str | None:
    """The file name a report's path escaped (`\\xff` back to the byte, as os.fsdecode gives
    it), to open the file; None when it escapes nothing."""
    if "\\x" not in text:
        return None
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), text)


_FIELDS: dict[type, tuple[str, ...]] = {}


def make_valid(value: Any) -> Any:
    """`value` (a string, a report model, a list or dict of them) with every string in it
    made valid (`valid_text`); models, lists and dicts are changed in place."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                if not item.isascii():
                    value[index] = valid_text(item)
            elif item is not None and not isinstance(item, (int, float)):
                make_valid(item)
        return value
    if isinstance(value, dict):
        items = [(make_valid(k), make_valid(v)) for k, v in value.items()]
        value.clear()
        value.update(items)
        return value
    names = _FIELDS.get(type(value))
    if names is None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return value
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    for name in names:
        item = getattr(value, name)
        if isinstance(item, str):
            if not item.isascii():
                setattr(value, name, valid_text(item))
        elif item is not None and not isinstance(item, (int, float)):
            make_valid(item)
    return value
