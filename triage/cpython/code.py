"""Code objects: file, names, first line and line table, read once per code object."""

from __future__ import annotations

from dataclasses import dataclass

from triage.cpython import linetable
from triage.cpython.fields import Field, Offsets, Optional
from triage.cpython.objects import ObjectReader
from triage.errors import ReadError, UnexpectedObject


class CodeFields(Offsets):
    """What a frame shows of its code object."""

    filename = Field("PyCodeObject", "co_filename", debug="code_object.filename")
    name = Field("PyCodeObject", "co_name", debug="code_object.name")
    qualname = Optional("PyCodeObject", "co_qualname", debug="code_object.qualname")
    firstlineno = Field("PyCodeObject", "co_firstlineno", debug="code_object.firstlineno")
    table = Field("PyCodeObject", "co_linetable", "co_lnotab", debug="code_object.linetable")


class AdaptiveCodeFields(Offsets, when=lambda m: m.line_table == "locations"):
    """3.11+: the bytecode lives in the code object; instruction pointers point into it."""

    code_adaptive = Field("PyCodeObject", "co_code_adaptive", debug="code_object.co_code_adaptive")


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What a frame needs of its code object."""

    address: int
    filename: str
    name: str
    qualname: str | None
    firstlineno: int
    table: bytes | None
    """The line table; None for the placeholder of an unreadable code object."""
    code_start: int
    """Address of the first code unit (3.11+, where instruction pointers point into the code
    object itself); 0 before."""

    @property
    def readable(self) -> bool:
        """False for the placeholder of an unreadable code object (`unreadable_code`)."""
        return self.table is not None


#: What a frame whose code object cannot be read shows as its file and function.
UNKNOWN = "???"


def unreadable_code(address: int) -> CodeInfo:
    """The placeholder of a code object that cannot be read: no file, name or lines."""
    return CodeInfo(address, UNKNOWN, UNKNOWN, None, 0, None, 0)


class CodeReader:
    """Reads and caches code objects; knows which line-table format this version uses."""

    def __init__(self, objects: ObjectReader) -> None:
        self.objects = objects
        self.f = objects.fields(CodeFields)
        self.format = objects.model.line_table
        if self.format == "locations":
            self.code_adaptive = objects.fields(AdaptiveCodeFields).code_adaptive
        self._cache: dict[int, CodeInfo] = {}

    def read(self, address: int) -> CodeInfo:
        info = self._cache.get(address)
        if info is None:
            info = self._read(address)
            self._cache[address] = info
        return info

    def _read(self, address: int) -> CodeInfo:
        objs = self.objects
        mem = objs.memory
        if not address or objs.type_name(address) != "code":
            raise UnexpectedObject(address, "not a code object")
        filename = objs.text(mem.u64(address + self.f.filename))
        name = objs.text(mem.u64(address + self.f.name))
        qualname = None
        if self.f.qualname is not None:
            qualname = objs.text(mem.u64(address + self.f.qualname))
        firstlineno = mem.i32(address + self.f.firstlineno)
        try:
            table = objs.bytes_value(mem.u64(address + self.f.table))
        except ReadError:
            table = b""
        start = address + self.code_adaptive if self.format == "locations" else 0
        return CodeInfo(address, filename, name, qualname, firstlineno, table, start)

    def position(self, code: CodeInfo, where: int) -> linetable.Position:
        """Source position of an instruction.

        `where` is f_lasti in bytes (<= 3.9), f_lasti in code units (3.10), or the index of the
        code unit the instruction pointer designates (3.11+).
        """
        table = code.table
        if table is None:  # the placeholder of an unreadable code object: no lines
            return linetable.Position(None, None, None, None)
        if where < 0:
            return linetable.Position(code.firstlineno, None, None, None)
        if self.format == "locations":
            return linetable.position_from_locations(table, code.firstlineno, where)
        if self.format == "linetable_310":
            line = linetable.line_from_linetable_310(table, code.firstlineno, where)
        else:
            line = linetable.line_from_lnotab(
                table, code.firstlineno, where, signed_deltas=self.format == "lnotab"
            )
        return linetable.Position(line, None, None, None)
