"""Reading Python objects out of a dead process: types, str/unicode, bytes, ints, tuples."""

from __future__ import annotations

from collections.abc import Callable
from typing import AnyStr, TypeVar

from triage.coredump.memory import CoreMemory
from triage.cpython.fields import BitField, Constant, Field, Offsets, Size
from triage.cpython.layout import Layout
from triage.cpython.model import Model
from triage.errors import AddressError, UnexpectedObject

MAX_STRING = 1 << 16
MAX_LENGTH = 1 << 40  # longer than any process holds: a length beyond it is damage

F = TypeVar("F", bound=Offsets)


class ObjectFields(Offsets):
    """Every object's header, its type's name and flags, tuples."""

    ob_type = Field("PyObject", "ob_type", debug="pyobject.ob_type")
    ob_size = Field("PyVarObject", "ob_size", debug="tuple_object.ob_size")
    tp_name = Field("PyTypeObject", "tp_name", debug="type_object.tp_name")
    tp_flags = Field("PyTypeObject", "tp_flags", debug="type_object.tp_flags")
    tuple_items = Field("PyTupleObject", "ob_item", debug="tuple_object.ob_item")


class StrFields(Offsets, when=lambda m: not m.py2_objects):
    """PEP 393 strings (3.3+) and bytes."""

    length = Field("PyASCIIObject", "length", debug="unicode_object.length")
    kind = BitField("PyASCIIObject", "state.kind")
    compact = BitField("PyASCIIObject", "state.compact")
    ascii = BitField("PyASCIIObject", "state.ascii")
    ascii_size = Size("PyASCIIObject", debug="unicode_object.asciiobject_size")
    compact_size = Size("PyCompactUnicodeObject")
    data = Field("PyUnicodeObject", "data")
    bytes_sval = Field("PyBytesObject", "ob_sval", debug="bytes_object.ob_sval")


class Py2StrFields(Offsets, when=lambda m: m.py2_objects):
    """2.7's byte strings and its separate unicode objects."""

    sval = Field("PyStringObject", "ob_sval")
    u_length = Field("PyUnicodeObject", "length")
    u_str = Field("PyUnicodeObject", "str")
    u_char = Constant("sizeof(Py_UNICODE)")


class ObjectReader:
    """Decodes objects of one interpreter version from core memory."""

    def __init__(self, memory: CoreMemory, layout: Layout) -> None:
        self.memory = memory
        self.layout = layout
        self.model = model = Model.of(layout)
        fields = ObjectFields(layout)
        self.ob_type = fields.ob_type
        self.ob_size = fields.ob_size
        self.tp_name = fields.tp_name
        self.tp_flags = fields.tp_flags
        self.tuple_ob_item = fields.tuple_items
        self.py2 = model.py2_objects
        self._type_names: dict[int, str] = {}
        self._fields: dict[type[Offsets], Offsets] = {}
        if not self.py2:
            text = StrFields(layout)
            self.u_length = text.length
            self.u_kind, self.u_compact, self.u_ascii = text.kind, text.compact, text.ascii
            self.u_ascii_size = text.ascii_size
            self.u_compact_size = text.compact_size
            self.u_data_any = text.data
            self.bytes_sval = text.bytes_sval
            # (byte, bit) of the one-bit `compact` and `ascii`: both set, the text is inline
            self.u_inline = [(f.offset, 1 << f.bit_offset) for f in (text.compact, text.ascii)]
        else:
            old = Py2StrFields(layout)
            self.s_sval = old.sval
            self.u2_length = old.u_length
            self.u2_str = old.u_str
            self.u2_char = old.u_char

    def fields(self, declared: type[F]) -> F:
        """A reader's declared members, resolved against this layout (once)."""
        found = self._fields.get(declared)
        if isinstance(found, declared):  # the one made below, on an earlier call
            return found
        made = self._fields[declared] = declared(self.layout)
        return made

    # -- basics -----------------------------------------------------------------------

    def ptr(self, address: int) -> int:
        return self.memory.u64(address)

    def type_of(self, obj: int) -> int:
        return self.memory.u64(obj + self.ob_type)

    def type_name(self, obj: int) -> str:
        """The tp_name of an object's type ('str', 'code', ...)."""
        return self.name_of_type(self.type_of(obj))

    def name_of_type(self, tp: int) -> str:
        """The tp_name of a type (read once per type)."""
        name = self._type_names.get(tp)
        if name is None:
            raw = self.memory.cstring(self.memory.u64(tp + self.tp_name), 256)
            name = raw.decode("utf-8", "replace")
            self._type_names[tp] = name
        return name

    def size(self, obj: int) -> int:
        return self.memory.i64(obj + self.ob_size)

    # -- strings ----------------------------------------------------------------------

    def text(self, obj: int, limit: int = MAX_STRING) -> str:
        """Decode a str (3.x), or a str/unicode (2.7); bytes are decoded as UTF-8."""
        if not obj:
            return ""
        name = self.type_name(obj)
        if self.py2:
            if name == "unicode":
                return self._unicode27(obj, limit)
            return self._bytes(obj, self.s_sval, limit).decode("utf-8", "surrogateescape")
        if name == "bytes":
            return self._bytes(obj, self.bytes_sval, limit).decode("utf-8", "surrogateescape")
        return self._unicode(obj, limit)

    def text_length(self, obj: int) -> int:
        """What `len(self.text(obj))` is for a str (3.x) or unicode (2.7), read from the
        object's header alone; the byte length for bytes (a 2.7 str)."""
        name = self.type_name(obj)
        if self.py2:
            return self.memory.i64(obj + self.u2_length) if name == "unicode" else self.size(obj)
        return self.size(obj) if name == "bytes" else self.memory.i64(obj + self.u_length)

    def str_head(self, obj: int, limit: int) -> tuple[int, int, str | None]:
        """(type, length, text) of a str (2.7: str or unicode) from one read of its header:
        the text when it is kept inline as ASCII (3.x compact ASCII, 2.7 str) and at most
        `limit` long, else None (`text` reads it); the length as `text_length` gives it. Of
        an object of another type, only the type means anything."""
        head = self.s_sval if self.py2 else self.u_ascii_size
        try:
            raw = self.memory.read(obj, head + limit)
        except AddressError:  # the object may end where its mapping ends
            raw = self.memory.read(obj, head)
        tp = int.from_bytes(raw[self.ob_type : self.ob_type + 8], "little")
        if self.py2:
            if self.name_of_type(tp) == "unicode":
                return tp, _i64(raw, self.u2_length), None
            length, inline = _i64(raw, self.ob_size), True
        else:
            length = _i64(raw, self.u_length)
            inline = all(raw[at] & bit for at, bit in self.u_inline)
        if not inline or not 0 <= length <= limit or len(raw) < head + length:
            return tp, length, None
        return tp, length, raw[head : head + length].decode("utf-8", "surrogateescape")

    def bytes_value(self, obj: int, limit: int = 1 << 24) -> bytes:
        """The contents of a bytes object (a str on 2.7)."""
        return self._bytes(obj, self.s_sval if self.py2 else self.bytes_sval, limit)

    def _bytes(self, obj: int, sval: int, limit: int) -> bytes:
        n = self.size(obj)
        if n < 0 or n > limit:
            raise UnexpectedObject(obj, f"implausible bytes length {n}")
        return self.memory.read(obj + sval, n)

    def _unicode(self, obj: int, limit: int) -> str:
        data, length, kind, ascii_ = self._unicode_layout(obj)
        if length > limit:
            raise UnexpectedObject(obj, f"implausible str length {length}")
        return self._decode(self.memory.read(data, length * kind), kind, ascii_)

    def _unicode_layout(self, obj: int) -> tuple[int, int, int, bool]:
        """(address of the characters, length, bytes per character, ascii) of a 3.x str, or
        of a 2.7 unicode (kind: sizeof(Py_UNICODE))."""
        if self.py2:
            length = self.memory.i64(obj + self.u2_length)
            if not 0 <= length <= MAX_LENGTH:
                raise UnexpectedObject(obj, f"implausible unicode length {length}")
            return self.memory.u64(obj + self.u2_str), length, self.u2_char, False
        length = self.memory.i64(obj + self.u_length)
        if not 0 <= length <= MAX_LENGTH:
            raise UnexpectedObject(obj, f"implausible str length {length}")
        kind_f = self.u_kind
        state = self.memory.read(obj + kind_f.offset, kind_f.nbytes)
        kind = kind_f.extract(state)
        compact = self.u_compact.extract(state)
        ascii_ = bool(self.u_ascii.extract(state))
        if kind not in (1, 2, 4):
            raise UnexpectedObject(obj, f"str of unknown kind {kind}")
        if compact:
            data = obj + (self.u_ascii_size if ascii_ else self.u_compact_size)
        else:
            data = self.memory.u64(obj + self.u_data_any)
        return data, length, kind, ascii_

    @staticmethod
    def _decode(raw: bytes, kind: int, ascii_: bool) -> str:
        if kind == 1:
            return raw.decode("ascii" if ascii_ else "latin-1", "replace")
        return raw.decode("utf-16-le" if kind == 2 else "utf-32-le", "surrogatepass")

    def _unicode27(self, obj: int, limit: int) -> str:
        data, length, kind, _ascii = self._unicode_layout(obj)
        if length > limit:
            raise UnexpectedObject(obj, f"implausible unicode length {length}")
        return self._decode(self.memory.read(data, length * kind), kind, False)

    def ends(
        self, obj: int, head: int, tail: int
    ) -> tuple[str, str, int] | tuple[bytes, bytes, int]:
        """The first `head` and last `tail` characters of a str (bytes of a bytes object, or
        of a 2.7 str) and its length, however long it is: only those are read. When it is no
        longer than head + tail, the first part is all of it and the last is empty."""
        name = self.type_name(obj)
        if name in ("str", "unicode") and not (self.py2 and name == "str"):
            data, length, kind, ascii_ = self._unicode_layout(obj)

            def text(start: int, count: int) -> str:
                raw = self.memory.read(data + start * kind, count * kind)
                return self._decode(raw, kind, ascii_)

            return _ends(text, length, head, tail)
        length = self.size(obj)
        if not 0 <= length <= MAX_LENGTH:
            raise UnexpectedObject(obj, f"implausible bytes length {length}")
        sval = obj + (self.s_sval if self.py2 else self.bytes_sval)

        def raw(start: int, count: int) -> bytes:
            return self.memory.read(sval + start, count)

        return _ends(raw, length, head, tail)

    # -- containers -------------------------------------------------------------------

    def tuple_items(self, obj: int, limit: int = 1 << 16) -> list[int]:
        n = self.size(obj)
        if n < 0 or n > limit:
            raise UnexpectedObject(obj, f"implausible tuple length {n}")
        raw = self.memory.read(obj + self.tuple_ob_item, 8 * n)
        return [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 8 * n, 8)]


def _i64(raw: bytes, at: int) -> int:
    return int.from_bytes(raw[at : at + 8], "little", signed=True)


def _ends(
    part: Callable[[int, int], AnyStr], length: int, head: int, tail: int
) -> tuple[AnyStr, AnyStr, int]:
    """`ObjectReader.ends` of a str or bytes whose characters `part(start, count)` reads."""
    if length <= head + tail:
        return part(0, length), part(0, 0), length
    return part(0, head), part(length - tail, tail), length
