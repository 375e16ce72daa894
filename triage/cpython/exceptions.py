"""The exceptions each thread was raising or handling when the core was made, and the
process's last uncaught exception.

Where CPython keeps them (the model's `raised` and `handled`, chosen from the table):

* raised and not yet caught, the "current exception": the thread state's `curexc_type`,
  `curexc_value` and `curexc_traceback` (<= 3.11; the value may be unnormalised, such as the
  str a C function gave `PyErr_SetString`, with the class in `curexc_type`), or its
  `current_exception` (3.12+);
* handled, inside an `except` block (or a `finally` or `with` exit run by an exception): the
  thread state's `exc_type`, `exc_value` and `exc_traceback` (2.7, 3.6); from 3.7 a chain of
  `_PyErr_StackItem` from `exc_info`, one item for each running generator or coroutine and
  then the thread's own (`exc_state`), with `exc_type/exc_value/exc_traceback` (3.7-3.10) or
  `exc_value` alone (3.11+). Nested handlers in plain calls share one item: the outer
  exception waits on a frame's value stack, which is not read, and is found as the inner
  one's `__context__`;
* chained (3.x): `__cause__` (`raise ... from ...`), else `__context__` unless
  `__suppress_context__`, the exception Python prints above another;
* the last uncaught exception, printed by the interpreter (the main script's, or one of an
  interactive session): `sys.last_exc` (3.12+), `sys.last_value` with `sys.last_type` and
  `sys.last_traceback`.

Each gives its class's name, its message (what `str(exc)` gives in the common cases: empty
without arguments, the one argument as str (repr for KeyError), the arguments' tuple
otherwise) and its traceback (`__traceback__`, a chain of `PyTracebackObject`) as frames, most
recent call last. A handful of reads a thread that handles nothing; damaged memory gives less
(no message, fewer frames, an exception left out), never an error.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from triage.cpython.containers import Py_TPFLAGS_HEAPTYPE, dict_get_strs
from triage.cpython.fields import Field, Offsets
from triage.cpython.frames import (
    FrameObjectFields,
    FrameWalker,
    InterpreterFrameFields,
    PyFrame,
)
from triage.cpython.linetable import CODE_UNIT_SIZE, Position
from triage.cpython.variables import VariableReader
from triage.errors import READ_ERRORS

if TYPE_CHECKING:
    from triage.report import ExceptionState

MAX_ITEMS = 8  # stack items of one thread (generators running generators...)
MAX_EXCEPTIONS = 8  # exceptions of one thread, chained ones included
MAX_TRACEBACK = 1000  # traceback entries kept, the most recent (sys.tracebacklimit's default)
MAX_LINKS = 100_000  # traceback entries followed
MAX_MESSAGE = 1000  # characters of a message; a longer one is cut and ends in "..."

Py_TPFLAGS_BASE_EXC_SUBCLASS = 1 << 30
Py_TPFLAGS_TYPE_SUBCLASS = 1 << 31
#: Modules a class name leaves out: 3.x's builtins, 2.7's built-in exceptions (`exceptions.X`).
OMITTED_MODULES = frozenset({"builtins", "exceptions"})

_TS, _ITEM = "PyThreadState", "_PyErr_StackItem"
_EXC, _TB = "PyBaseExceptionObject", "PyTracebackObject"
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")


class ExceptionFields(Offsets):
    """Exception objects' arguments, traceback entries, classes' names, the sys dict."""

    args = Field(_EXC, "args")
    tb_next = Field(_TB, "tb_next")
    tb_frame = Field(_TB, "tb_frame")
    tb_lasti = Field(_TB, "tb_lasti")
    tb_lineno = Field(_TB, "tb_lineno")
    tp_dict = Field("PyTypeObject", "tp_dict")
    qualname = Field("PyHeapTypeObject", "ht_qualname", "ht_name")  # 2.7: the name
    sysdict = Field("PyInterpreterState", "sysdict", debug="interpreter_state.sysdict")


class ChainFields(Offsets, when=lambda m: not m.py2_objects):
    """3.x exceptions keep their traceback and the exceptions they were raised from."""

    traceback = Field(_EXC, "traceback")
    context = Field(_EXC, "context")
    cause = Field(_EXC, "cause")
    suppress_context = Field(_EXC, "suppress_context")


class OldStyleFields(Offsets, when=lambda m: m.py2_objects):
    """2.7: instances of old-style classes can be raised too."""

    in_class = Field("PyInstanceObject", "in_class")
    cl_name = Field("PyClassObject", "cl_name")
    cl_dict = Field("PyClassObject", "cl_dict")


class RaisedTripleFields(Offsets, when=lambda m: m.raised == "triple"):
    """<= 3.11: the raised exception as (class, value, traceback)."""

    kind = Field(_TS, "curexc_type")
    value = Field(_TS, "curexc_value")
    traceback = Field(_TS, "curexc_traceback")


class RaisedObjectFields(Offsets, when=lambda m: m.raised == "object"):
    """3.12+: the raised exception, an instance."""

    current = Field(_TS, "current_exception", debug="thread_state.current_exception")


class ThreadHandledFields(Offsets, when=lambda m: m.handled == "thread_state"):
    """2.7, 3.6: the handled exception in the thread state."""

    kind = Field(_TS, "exc_type")
    value = Field(_TS, "exc_value")
    traceback = Field(_TS, "exc_traceback")


class StackItemFields(Offsets, when=lambda m: m.handled != "thread_state"):
    """3.7+: the chain of handled exceptions, newest item first."""

    exc_info = Field(_TS, "exc_info")
    value = Field(_ITEM, "exc_value", debug="err_stackitem.exc_value")
    previous = Field(_ITEM, "previous_item")


class ItemTripleFields(Offsets, when=lambda m: m.handled == "item_triples"):
    """3.7-3.10: stack items keep the class and traceback too."""

    kind = Field(_ITEM, "exc_type")
    traceback = Field(_ITEM, "exc_traceback")


class FrameObjectLink(Offsets, when=lambda m: m.frames != "frame_objects"):
    """3.11+: a frame object's interpreter frame (its own copy once the call has ended)."""

    f_frame = Field("PyFrameObject", "f_frame")


class PyException(NamedTuple):
    """One exception as the report shows it (a NamedTuple: a dataclass costs every start
    of the command most of a millisecond)."""

    state: ExceptionState
    """"raised", "handling", "context", "cause" or "last" (see report.ExceptionReport)."""
    type_name: str
    message: str | None
    """None when it cannot be told (unreadable, or an instance of a 2.7 old-style class)."""
    address: int | None
    """The exception object; None for an unnormalised one (only its class and value exist)."""
    frames: list[PyFrame]
    """Its traceback, most recent call last."""


class _Held(NamedTuple):
    """An exception as CPython holds it: a value, and the class and traceback when it keeps
    them apart (0 when not)."""

    value: int
    kind: int = 0
    traceback: int = 0


class ExceptionReader:
    """Reads the exceptions of thread states and the sys module (one per interpreter)."""

    def __init__(self, walker: FrameWalker, variables: Callable[[], VariableReader]) -> None:
        self.objects = objects = walker.objects
        self.memory = objects.memory
        self.model = model = objects.model
        self.codes, self.qualnames = walker.codes, walker.qualnames
        self.variables = variables
        self.f = objects.fields(ExceptionFields)
        self.chain = None if model.py2_objects else objects.fields(ChainFields)
        self.old_style = objects.fields(OldStyleFields) if model.py2_objects else None
        if model.raised == "object":
            self.raised_at: tuple[int, ...] = (objects.fields(RaisedObjectFields).current,)
        else:
            r = objects.fields(RaisedTripleFields)
            self.raised_at = (r.value, r.kind, r.traceback)
        if model.handled == "thread_state":
            h = objects.fields(ThreadHandledFields)
            self.handled_at: tuple[int, ...] = (h.value, h.kind, h.traceback)
        else:
            items = objects.fields(StackItemFields)
            self.exc_info, self.previous = items.exc_info, items.previous
            self.handled_at = (items.value,)
            if model.handled == "item_triples":
                t = objects.fields(ItemTripleFields)
                self.handled_at += (t.kind, t.traceback)
        if model.frames == "frame_objects":
            self.f_code, self.f_frame = objects.fields(FrameObjectFields).f_code, None
        else:
            self.f_frame = objects.fields(FrameObjectLink).f_frame
            self.f_code = objects.fields(InterpreterFrameFields).code
        # tb_lasti counts bytes; line tables before 3.10's are indexed by bytes, later ones
        # by code units. Locations tables (3.11+) also give columns.
        lnotab = model.line_table in ("lnotab", "lnotab_unsigned")
        self.lasti_unit = 1 if lnotab else CODE_UNIT_SIZE
        self.columns = model.line_table == "locations"
        f = self.f
        self.tb_span = max(f.tb_next, f.tb_frame, f.tb_lasti, f.tb_lineno) + 8
        self._names: dict[int, str] = {}
        self._flags: dict[int, int] = {}

    # -- where exceptions are ---------------------------------------------------------

    def thread_exceptions(self, tstate: int) -> list[PyException]:
        """The thread's raised exception, then those it handles, innermost first, each
        followed by the exceptions it was raised from; each once, at most MAX_EXCEPTIONS."""
        roots: list[tuple[ExceptionState, _Held]] = []
        try:
            raised = self._held(tstate, self.raised_at)
            if raised is not None:
                roots.append(("raised", raised))
        except READ_ERRORS:
            pass
        roots += [("handling", held) for held in self._handled(tstate)]
        return self._with_chains(roots)

    def last_exception(self, interp: int) -> PyException | None:
        """`sys.last_exc`, or `sys.last_value` (with `last_type`, `last_traceback`), of one
        interpreter; None when unset or unreadable."""
        try:
            sysdict = self.memory.u64(interp + self.f.sysdict)
            if not sysdict:
                return None
            keys = ("last_exc", "last_value", "last_type", "last_traceback")
            found = dict_get_strs(self.objects, sysdict, keys)
            value = self._unless_none(found.get("last_exc") or found.get("last_value", 0))
            kind = self._unless_none(found.get("last_type", 0))
            if not value and not kind:
                return None
            held = _Held(value, kind, self._unless_none(found.get("last_traceback", 0)))
        except READ_ERRORS:
            return None
        return self._describe("last", held)

    def _handled(self, tstate: int) -> list[_Held]:
        """The handled exceptions, innermost first (as far as they can be read)."""
        out: list[_Held] = []
        try:
            if self.model.handled == "thread_state":
                held = self._held(tstate, self.handled_at)
                return [held] if held is not None else []
            item = self.memory.u64(tstate + self.exc_info)
            seen: set[int] = set()
            while item and item not in seen and len(seen) < MAX_ITEMS:
                seen.add(item)
                held = self._held(item, self.handled_at)
                if held is not None:
                    out.append(held)
                item = self.memory.u64(item + self.previous)
        except READ_ERRORS:
            pass
        return out

    def _held(self, base: int, at: tuple[int, ...]) -> _Held | None:
        """The (value[, class, traceback]) members at offsets `at` of `base`, None and NULL
        as 0; None when no exception is there."""
        low = min(at)
        raw = self.memory.read(base + low, max(at) + 8 - low)
        found = [self._unless_none(_U64.unpack_from(raw, a - low)[0]) for a in at]
        if not found[0] and not (len(found) > 1 and found[1]):
            return None
        return _Held(*found)

    def _unless_none(self, obj: int) -> int:
        return 0 if not obj or self.objects.type_name(obj) == "NoneType" else obj

    def _with_chains(self, roots: list[tuple[ExceptionState, _Held]]) -> list[PyException]:
        handling = {held.value for state, held in roots if state == "handling"}
        out: list[PyException] = []
        seen: set[int] = set()
        for state, held in roots:
            chained: tuple[ExceptionState, _Held] | None = (state, held)
            while chained is not None and len(out) < MAX_EXCEPTIONS:
                state, held = chained
                if held.value in seen:
                    break
                seen.add(held.value)
                if state != "raised" and held.value in handling:
                    state = "handling"
                described = self._describe(state, held)
                if described is None:
                    break
                out.append(described)
                chained = self._raised_from(held.value) if described.address else None
        return out

    def _raised_from(self, exc: int) -> tuple[ExceptionState, _Held] | None:
        """The exception `exc` was raised from, as Python prints it above: its `__cause__`,
        else its `__context__` unless suppressed."""
        if self.chain is None:
            return None
        try:
            cause = self._unless_none(self.memory.u64(exc + self.chain.cause))
            if cause:
                return "cause", _Held(cause)
            context = self._unless_none(self.memory.u64(exc + self.chain.context))
            if context and not self.memory.read(exc + self.chain.suppress_context, 1)[0]:
                return "context", _Held(context)
        except READ_ERRORS:
            pass
        return None

    # -- one exception ----------------------------------------------------------------

    def _describe(self, state: ExceptionState, held: _Held) -> PyException | None:
        """The exception `held`, None when it is none (or its class cannot be read)."""
        objs = self.objects
        value, kind, tb = held
        try:
            if value and self._flag(objs.type_of(value)) & Py_TPFLAGS_BASE_EXC_SUBCLASS:
                name = self.class_name(objs.type_of(value))
                address: int | None = value
                if not tb and self.chain is not None:
                    tb = self.memory.u64(value + self.chain.traceback)
            elif value and self.old_style is not None and objs.type_name(value) == "instance":
                name = self._old_class_name(self.memory.u64(value + self.old_style.in_class))
                address = value
            elif kind and self._is_class(kind):  # unnormalised: a class and its argument(s)
                name = self.class_name(kind)
                address = None
            else:
                return None
        except READ_ERRORS:
            return None
        message = self._message(value, address, name)
        return PyException(state, name, message, address, self._traceback(tb))

    def _flag(self, tp: int) -> int:
        flags = self._flags.get(tp)
        if flags is None:
            flags = self._flags[tp] = self.memory.u64(tp + self.objects.tp_flags)
        return flags

    def _is_class(self, obj: int) -> bool:
        """An exception class (or, on 2.7, any old-style class)."""
        if self.old_style is not None and self.objects.type_name(obj) == "classobj":
            return True
        is_type = self._flag(self.objects.type_of(obj)) & Py_TPFLAGS_TYPE_SUBCLASS
        return bool(is_type and self._flag(obj) & Py_TPFLAGS_BASE_EXC_SUBCLASS)

    def class_name(self, tp: int) -> str:
        """`ValueError`, `module.Qual.Name` for classes defined in Python, a static type's
        `tp_name` (`_ctypes.ArgumentError`); builtins and 2.7's exceptions module left out."""
        name = self._names.get(tp)
        if name is not None:
            return name
        objs, mem = self.objects, self.memory
        if self.old_style is not None and objs.type_name(tp) == "classobj":
            return self._old_class_name(tp)
        if self._flag(tp) & Py_TPFLAGS_HEAPTYPE:
            qualname = objs.text(mem.u64(tp + self.f.qualname))
            module = self._module(mem.u64(tp + self.f.tp_dict))
        else:
            raw = mem.cstring(mem.u64(tp + objs.tp_name), 256).decode("utf-8", "replace")
            module, _, qualname = raw.rpartition(".")
        name = self._names[tp] = _qualified(module, qualname)
        return name

    def _old_class_name(self, cls: int) -> str:
        assert self.old_style is not None
        mem = self.memory
        qualname = self.objects.text(mem.u64(cls + self.old_style.cl_name))
        return _qualified(self._module(mem.u64(cls + self.old_style.cl_dict)), qualname)

    def _module(self, namespace: int) -> str:
        """`__module__` of a class's namespace, when it is a str."""
        if not namespace:
            return ""
        module = dict_get_strs(self.objects, namespace, ("__module__",)).get("__module__")
        if not module or self.objects.type_name(module) not in ("str", "unicode"):
            return ""
        return self.objects.text(module)

    def _message(self, value: int, instance: int | None, name: str) -> str | None:
        """str(exc) for the common cases; None when it cannot be read."""
        objs = self.objects
        try:
            if instance is None:  # unnormalised: the value is the argument(s), or nothing
                if not value:
                    return ""
                args = value if objs.type_name(value) == "tuple" else None
                return self._text(value) if args is None else self._arguments(args, name)
            if objs.type_name(instance) == "instance":  # 2.7 old-style: its __str__ decides
                return None
            args = self.memory.u64(instance + self.f.args)
            return self._arguments(args, name) if args else ""
        except READ_ERRORS:
            return None

    def _arguments(self, args: int, name: str) -> str:
        """BaseException's str of its arguments' tuple: empty, the one argument's str (its
        repr for KeyError), or the tuple's repr."""
        count = self.objects.size(args)
        if count == 0:
            return ""
        if count == 1:
            (only,) = self.objects.tuple_items(args, 1)
            return self.variables().repr(only) if name == "KeyError" else self._text(only)
        return self.variables().repr(args)

    def _text(self, obj: int) -> str:
        """str(obj): a str's (2.7: str's or unicode's) text itself, cut at MAX_MESSAGE; other
        objects as --locals shows them."""
        if self.objects.type_name(obj) not in ("str", "unicode"):
            return self.variables().repr(obj)
        head, _, length = self.objects.ends(obj, MAX_MESSAGE, 0)
        text = head.decode("utf-8", "surrogateescape") if isinstance(head, bytes) else head
        return text + "..." if length > MAX_MESSAGE else text

    # -- tracebacks -------------------------------------------------------------------

    def _traceback(self, tb: int) -> list[PyFrame]:
        """The frames of a traceback, most recent call last: as many as can be read."""
        entries: deque[tuple[int, int, int]] = deque(maxlen=MAX_TRACEBACK)
        f, mem = self.f, self.memory
        try:
            if not tb or self.objects.type_name(tb) != "traceback":
                return []
            tb_type = self.objects.type_of(tb)
            seen: set[int] = set()
            while tb and tb not in seen and len(seen) < MAX_LINKS:
                seen.add(tb)
                raw = mem.read(tb, self.tb_span)
                if _U64.unpack_from(raw, self.objects.ob_type)[0] != tb_type:
                    break
                frame = _U64.unpack_from(raw, f.tb_frame)[0]
                lasti = _I32.unpack_from(raw, f.tb_lasti)[0]
                entries.append((frame, lasti, _I32.unpack_from(raw, f.tb_lineno)[0]))
                tb = _U64.unpack_from(raw, f.tb_next)[0]
        except READ_ERRORS:
            pass
        frames = []
        for frame, lasti, lineno in entries:
            try:
                frames.append(self._frame(frame, lasti, lineno))
            except READ_ERRORS:
                continue
        return frames

    def _frame(self, frame: int, lasti: int, lineno: int) -> PyFrame:
        """A traceback entry's frame: its code, and the line of `tb_lineno`, or where
        `tb_lasti` points when that is -1 (computed on demand, 3.12+)."""
        mem = self.memory
        if self.f_frame is None:
            code_at = mem.u64(frame + self.f_code)
        else:
            code_at = self.model.untag(mem.u64(mem.u64(frame + self.f_frame) + self.f_code))
        code = self.codes.read(code_at)
        pos = Position(lineno if lineno >= 0 else None)
        if lasti >= 0 and (pos.line is None or self.columns):
            found = self.codes.position(code, lasti // self.lasti_unit)
            if pos.line is None or found.line == pos.line:
                pos = found
        qualname = self.qualnames.qualname(frame, code) or code.qualname
        return PyFrame(
            frame, code, pos.line, pos.column, pos.end_line, pos.end_column, False, qualname
        )


def _qualified(module: str, qualname: str) -> str:
    return f"{module}.{qualname}" if module and module not in OMITTED_MODULES else qualname
