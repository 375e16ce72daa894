"""Arguments and local variables of a Python frame, with a short repr of each value.

Where a frame keeps them (from the layout, not the version number):

* `PyFrameObject.f_localsplus` (2.7-3.10): the code object's `co_varnames` (its first
  `co_argcount` [+ `co_kwonlyargcount`] [+ *args] [+ **kwargs] are the arguments), then
  `co_cellvars` and `co_freevars`, whose slots hold cell objects;
* `_PyInterpreterFrame.localsplus` (3.11+): `co_localsplusnames`, with one kind byte each in
  `co_localspluskinds` (local, cell, free; hidden: a comprehension's inlined locals, 3.12+).

Values are shown as Python would show them for None, bools, ints, floats, str and bytes
(of any length, cut in the middle to MAX_REPR characters as reprlib cuts them; an int of more
than MAX_INT_BITS as `<int of N bits>`), lists, tuples and dicts (their first MAX_ITEMS items,
nested up to MAX_DEPTH levels, an item that cannot be read as `<invalid object at 0x...>`);
any other object as `<TYPE object at 0xADDRESS>`. An unset slot (a local not yet assigned) is
left out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, AnyStr, Literal

from triage.cpython.code import CodeInfo
from triage.cpython.containers import UnexpectedObject, dict_items, int_value
from triage.cpython.fields import Field, Offsets, Optional
from triage.cpython.objects import ObjectReader
from triage.errors import READ_ERRORS

if TYPE_CHECKING:
    from triage.report import VariableKind

MAX_REPR = 120
MAX_ITEMS = 5
MAX_DEPTH = 4  # containers shown this deep; deeper ones as [...], (...), {...} (reprlib)
MAX_INT_BITS = 384  # 116 decimal digits

CO_VARARGS, CO_VARKEYWORDS = 0x04, 0x08
CO_FAST_HIDDEN, CO_FAST_LOCAL, CO_FAST_CELL, CO_FAST_FREE = 0x10, 0x20, 0x40, 0x80


@dataclass(frozen=True, slots=True)
class Variable:
    """One argument or local variable of a frame."""

    name: str
    kind: VariableKind
    """"argument", "local", "cell" (a local closures share) or "free" (one from outside)."""
    value: str


@dataclass(frozen=True, slots=True)
class _Slots:
    """What a code object says of its frame's variable slots."""

    names: list[str]
    kinds: list[VariableKind]
    hidden: frozenset[int]


class VariableFields(Offsets):
    """How many arguments a code object has; cells, floats and lists for the reprs."""

    co_argcount = Field("PyCodeObject", "co_argcount", debug="code_object.argcount")
    co_kwonlyargcount = Optional("PyCodeObject", "co_kwonlyargcount")
    co_flags = Field("PyCodeObject", "co_flags")
    cell_ref = Field("PyCellObject", "ob_ref")
    float_value = Field("PyFloatObject", "ob_fval", debug="float_object.ob_fval")
    list_items = Field("PyListObject", "ob_item", debug="list_object.ob_item")


class FrameObjectSlots(Offsets, when=lambda m: m.localsplus == "frame_object"):
    """<= 3.10: `f_localsplus`, named by `co_varnames`, `co_cellvars`, `co_freevars`."""

    slots = Field("PyFrameObject", "f_localsplus")
    varnames = Field("PyCodeObject", "co_varnames")
    cellvars = Field("PyCodeObject", "co_cellvars")
    freevars = Field("PyCodeObject", "co_freevars")


class InterpreterFrameSlots(Offsets, when=lambda m: m.localsplus == "interpreter_frame"):
    """3.11+: `localsplus`, named by `co_localsplusnames` with a kind byte each."""

    slots = Field("_PyInterpreterFrame", "localsplus", debug="interpreter_frame.localsplus")
    names = Field("PyCodeObject", "co_localsplusnames", debug="code_object.localsplusnames")
    kinds = Field("PyCodeObject", "co_localspluskinds", debug="code_object.localspluskinds")


class VariableReader:
    """Reads the variables of frames (one reader per interpreter)."""

    def __init__(self, objects: ObjectReader) -> None:
        self.objects = objects
        self.memory = objects.memory
        self.model = objects.model
        f = objects.fields(VariableFields)
        self.co_argcount = f.co_argcount
        self.co_kwonlyargcount = f.co_kwonlyargcount
        self.co_flags = f.co_flags
        if self.model.localsplus == "interpreter_frame":
            new = objects.fields(InterpreterFrameSlots)
            self.slots_at, self.co_names, self.co_kinds = new.slots, new.names, new.kinds
            self.split = None
        else:
            old = objects.fields(FrameObjectSlots)
            self.slots_at = old.slots
            self.split = (old.varnames, old.cellvars, old.freevars)
        self.cell_ref = f.cell_ref
        self.float_value = f.float_value
        self.list_items = f.list_items
        self._slots: dict[int, _Slots] = {}

    def variables(self, frame: int, code: CodeInfo) -> list[Variable]:
        """The frame's arguments and locals, in slot order; unset ones left out."""
        slots = self._slots.get(code.address)
        if slots is None:
            slots = self._slots[code.address] = self._read_slots(code.address)
        raw = self.memory.read(frame + self.slots_at, 8 * len(slots.names))
        out = []
        model = self.model
        for i, (name, kind) in enumerate(zip(slots.names, slots.kinds, strict=True)):
            ref = int.from_bytes(raw[8 * i : 8 * i + 8], "little")
            if i in slots.hidden:
                continue
            unboxed = model.unboxed_int(ref)  # 3.14+: an int kept in the reference itself
            if unboxed is not None:
                out.append(Variable(name, kind, str(unboxed)))
                continue
            value = model.untag(ref)
            if not value:
                continue
            try:
                if kind in ("cell", "free") and self.objects.type_name(value) == "cell":
                    value = self.memory.u64(value + self.cell_ref)
                    if not value:
                        continue
                shown = self.repr(value)
            except READ_ERRORS as exc:
                shown = f"<unreadable: {exc}>"
            out.append(Variable(name, kind, shown))
        return out

    def _read_slots(self, code: int) -> _Slots:
        mem, objs = self.memory, self.objects
        arguments = mem.i32(code + self.co_argcount)
        if self.co_kwonlyargcount is not None:
            arguments += mem.i32(code + self.co_kwonlyargcount)
        flags = mem.i32(code + self.co_flags)
        arguments += bool(flags & CO_VARARGS) + bool(flags & CO_VARKEYWORDS)
        hidden: set[int] = set()
        if self.split is None:
            names = [objs.text(n) for n in objs.tuple_items(mem.u64(code + self.co_names))]
            kind_bytes = objs.bytes_value(mem.u64(code + self.co_kinds))
            cells: list[Literal["cell", "free", ""]] = []  # "": an argument or a local
            for i, k in enumerate(kind_bytes[: len(names)]):
                if k & CO_FAST_HIDDEN:
                    hidden.add(i)
                cells.append("cell" if k & CO_FAST_CELL else "free" if k & CO_FAST_FREE else "")
        else:
            groups = [
                [objs.text(n) for n in objs.tuple_items(mem.u64(code + offset))]
                for offset in self.split
            ]
            names = [n for group in groups for n in group]
            cells = [""] * len(groups[0])
            cells += ["cell"] * len(groups[1])
            cells += ["free"] * len(groups[2])
        kinds: list[VariableKind] = [
            kind or ("argument" if i < arguments else "local") for i, kind in enumerate(cells)
        ]
        return _Slots(names, kinds, frozenset(hidden))

    # -- values -----------------------------------------------------------------------

    def repr(self, obj: int, depth: int = 0) -> str:
        """A short repr of the object at `obj`."""
        objs = self.objects
        name = objs.type_name(obj)
        if name == "NoneType":
            return "None"
        if name == "bool":
            return "True" if int_value(objs, obj) else "False"
        if name in ("int", "long"):
            value = int_value(objs, obj)
            if value.bit_length() > MAX_INT_BITS:  # what would not fit MAX_REPR anyway
                return f"<int of {value.bit_length()} bits>"
            return str(value)
        if name == "float":
            return repr(struct.unpack("<d", self.memory.read(obj + self.float_value, 8))[0])
        if name in ("str", "unicode", "bytes"):
            return self._text(obj)
        if name in ("list", "tuple", "dict"):
            if depth >= MAX_DEPTH:
                return {"list": "[...]", "tuple": "(...)", "dict": "{...}"}[name]
            return self._container(obj, name, depth)
        return f"<{name} object at {obj:#x}>"

    def _text(self, obj: int) -> str:
        """A str or bytes as Python shows it, cut in the middle as reprlib cuts it (only the
        head and the tail are read, however long it is). 2.7's str is shown as Python 2 shows
        it ('\\xff'), its unicode as 3.x's str."""
        tail = MAX_REPR - 3 - (MAX_REPR - 3) // 2
        parts = self.objects.ends(obj, MAX_REPR, tail)
        if isinstance(parts[0], bytes):
            return _cut_repr(*parts, python2_str=self.objects.py2)
        return _cut_repr(*parts, python2_str=False)

    def _item(self, obj: int, depth: int) -> str:
        """A container's item; one that cannot be read is shown in place, as PyStack does."""
        try:
            return self.repr(obj, depth)
        except READ_ERRORS:
            return f"<invalid object at {obj:#x}>"

    def _container(self, obj: int, name: str, depth: int) -> str:
        objs = self.objects
        if name == "dict":
            pairs = dict_items(objs, obj)
            shown = [
                f"{self._item(k, depth + 1)}: {self._item(v, depth + 1)}"
                for k, v in pairs[:MAX_ITEMS]
            ]
            count, opening, closing = len(pairs), "{", "}"
        else:
            if name == "tuple":
                items = objs.tuple_items(obj)
            else:
                size = objs.size(obj)
                if not 0 <= size <= 1 << 24:
                    raise UnexpectedObject(obj, f"implausible list length {size}")
                array = self.memory.u64(obj + self.list_items)
                raw = self.memory.read(array, 8 * min(size, MAX_ITEMS)) if size else b""
                items = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8)]
                items += [0] * (size - len(items))  # counted, not shown
            shown = [self._item(item, depth + 1) for item in items[:MAX_ITEMS]]
            count = len(items)
            opening, closing = ("(", ",)" if count == 1 else ")") if name == "tuple" else "[]"
        more = f", ... ({count} items)" if count > MAX_ITEMS else ""
        return _cut(f"{opening}{', '.join(shown)}{more}{closing}")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _cut_repr(head: AnyStr, end: AnyStr, length: int, *, python2_str: bool) -> str:
    """The repr of a str or bytes of `length` characters whose first and last ones are
    `head` and `end` (all of it in `head` when `end` is empty), cut in the middle to MAX_REPR
    characters as reprlib cuts it; a 2.7 str shown without its b prefix."""
    short = not end  # all of it was read

    def shown(value: AnyStr) -> str:
        text = repr(value)
        return text[1:] if python2_str else text

    whole = head if short else head + end
    text = shown(whole[:MAX_REPR])
    if len(text) <= MAX_REPR and (short or length <= MAX_REPR):
        return text
    i = max(0, (MAX_REPR - 3) // 2)
    j = max(0, MAX_REPR - 3 - i)
    text = shown(whole[:i] + whole[len(whole) - j :])
    return text[:i] + "..." + text[len(text) - j :]
