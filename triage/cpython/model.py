"""What a CPython version means for the readers, chosen once per layout.

The layout tables say where members are; this module says what a version's members mean: how a
thread's frames are chained, which line-table format its code objects carry, how strings and
ints are stored, where an instance keeps its attributes, whether stack references carry tag
bits. It is the one place in the engine that knows how versions differ in behaviour, and it
decides every choice from what the table holds (members, constants derived from the headers),
never from the version number, so that a new CPython needs a new table and, only where its
behaviour truly changed, a new choice here (docs/architecture.md, "Adding a CPython version").
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Literal, NamedTuple

from triage.cpython.layout import Layout

if TYPE_CHECKING:  # (typing's Literal costs start-up time; the names are for the checker)
    FrameModel = Literal["frame_objects", "cframe", "thread_state"]
    LineTable = Literal["lnotab_unsigned", "lnotab", "linetable_310", "locations"]
    InstanceDicts = Literal["dictoffset", "values_before", "dict_or_values", "inline_values"]
    Where = Literal["interpreter", "runtime", "symbol"]
    Raised = Literal["triple", "object"]
    Handled = Literal["thread_state", "item_triples", "items"]

_TS, _IFRAME, _CODE = "PyThreadState", "_PyInterpreterFrame", "PyCodeObject"
_ITEM = "_PyErr_StackItem"

#: What the choices below look at, so that every table holds it (scripts/derive_layouts.py).
INSPECTED_STRUCTS = frozenset(
    {
        _TS,
        _IFRAME,
        _CODE,
        "PyStringObject",
        "PyLongObject",
        "PyDictKeysObject",
        "PyDictValues",
        "PyDictOrValues",
        "PyInterpreterState",
        "_PyRuntimeState",
        "PyObject",
        "PyTypeObject",
        _ITEM,
    }
)
INSPECTED_CONSTANTS = (
    "FRAME_OWNED_BY_CSTACK",
    "FRAME_OWNED_BY_INTERPRETER",
    "sizeof(_PyStackRef)",
    "Py_TAG_BITS",
    "Py_INT_TAG",
    "Py_TAGGED_SHIFT",
)


class Model(NamedTuple):
    """The behaviour of one layout's CPython, as the readers need it (a NamedTuple: it is
    made at every start, and a dataclass costs the command's start-up a millisecond)."""

    frames: FrameModel
    """Where a thread's newest frame is: `PyThreadState.frame`, a chain of `PyFrameObject`
    (2.7-3.10); `.cframe->current_frame`, a chain of `_PyInterpreterFrame` (3.11, 3.12);
    `.current_frame` (3.13+)."""
    entry_flag: bool
    """`_PyInterpreterFrame.is_entry` marks the first frame of each eval-loop call (3.11)."""
    shim_owners: frozenset[int]
    """`owner` values of interpreter frames that are no Python frame but mark an eval-loop
    entry (`FRAME_OWNED_BY_CSTACK` 3.12-3.14, `FRAME_OWNED_BY_INTERPRETER` 3.14+)."""
    line_table: LineTable
    """`co_lnotab` with unsigned (2.7) or signed (3.6-3.9) line deltas, 3.10's
    `co_linetable`, or the PEP 657 location table (3.11+)."""
    py2_objects: bool
    """2.7's object model: `str` is bytes (`PyStringObject`), `unicode` is separate, ints are
    `PyIntObject` or `long`, old-style class instances exist, exceptions keep neither their
    traceback nor the exceptions they were raised from (`__cause__`, `__context__`)."""
    dict_keys: Literal["py2", "dk_size", "log2"]
    """How a dict's keys object gives its size: `dk_size` (3.6-3.10) or `dk_log2_size` with
    unicode-only entries by `dk_kind` (3.11+); 2.7 dicts have no keys object."""
    ints: Literal["py2", "ob_size", "lv_tag"]
    """How a `PyLongObject` stores sign and size: in `ob_size` (<= 3.11) or `lv_tag`."""
    instance_dicts: InstanceDicts
    """Where an instance keeps its attributes: at `tp_dictoffset` only (<= 3.10); a managed
    dict with a values pointer before it (3.11); one tagged dict-or-values slot (3.12);
    inline values after the object (3.13+)."""
    localsplus: Literal["frame_object", "interpreter_frame"]
    """Where a frame's variables live: `PyFrameObject.f_localsplus` with names split over
    `co_varnames`/`co_cellvars`/`co_freevars`, or `_PyInterpreterFrame.localsplus` with
    `co_localsplusnames` and one kind byte each."""
    qualnames_from_self: bool
    """Code objects have no `co_qualname` (< 3.11): `Class.method` is found through the
    frame's `self`/`cls`."""
    gil: Where
    """Where the GIL holder is: the interpreter's `ceval.gil` (3.12+), the runtime's
    `gilstate.tstate_current` (3.7-3.11), the `_PyThreadState_Current` symbol."""
    gc: Where
    """Where `collecting` is: the interpreter's `gc` (3.9+), the runtime's, or a symbol."""
    stackref_tags: int
    """Low bits of a `_PyStackRef` that are tags, masked off to get the object (3.14+: frame
    `f_executable` and `localsplus`); 0 where those slots are plain `PyObject *`."""
    tagged_int: int | None
    """The tag of a stack reference that holds an unboxed int (`Py_INT_TAG`), if any."""
    tagged_shift: int
    """How far an unboxed int is shifted left of its tag (`Py_TAGGED_SHIFT`; 2 in 3.14, whose
    headers write the number)."""
    free_threaded: bool
    """A free-threaded build (`PyObject.ob_tid`): another object header, no global GIL."""
    vectorcall: bool
    """Calls go through vectorcall (3.8+: `PyTypeObject.tp_vectorcall_offset`), whose
    functions native stacks show."""
    raised: Raised
    """Where a thread's raised, not yet caught exception is: the thread state's
    `curexc_type/curexc_value/curexc_traceback`, whose value may be unnormalised (<= 3.11), or
    its `current_exception`, an exception instance (3.12+)."""
    handled: Handled
    """Where the exceptions a thread handles are: the thread state's `exc_type/exc_value/
    exc_traceback` (2.7, 3.6), or a chain of `_PyErr_StackItem` from its `exc_info` with those
    three members (3.7-3.10) or `exc_value` alone (3.11+)."""

    def untag(self, ref: int) -> int:
        """The object address in a stack reference (a plain pointer before 3.14); 0 for NULL
        and for an unboxed int."""
        if self.tagged_int is not None and ref & self.stackref_tags == self.tagged_int:
            return 0
        return ref & ~self.stackref_tags

    def unboxed_int(self, ref: int) -> int | None:
        """The value of a stack reference that holds an unboxed int (3.14+), else None."""
        if self.tagged_int is None or ref & self.stackref_tags != self.tagged_int:
            return None
        signed = ref - (1 << 64) if ref >> 63 else ref
        return signed >> self.tagged_shift

    @staticmethod
    def of(layout: Layout) -> Model:
        """The model of `layout`'s CPython (cached per table)."""
        return _model(layout)


def _first_present(layout: Layout, choices: list[tuple[str, str, Where]]) -> Where:
    for struct, field, where in choices:
        if layout.has(struct, field):
            return where
    return "symbol"


@lru_cache(maxsize=64)
def _model(lay: Layout) -> Model:
    has, const = lay.has, lay.has_constant
    py2 = has("PyStringObject")
    if has(_TS, "frame"):
        frames: FrameModel = "frame_objects"
    elif has(_TS, "cframe"):
        frames = "cframe"
    else:
        frames = "thread_state"
    if has(_CODE, "co_code_adaptive"):
        table: LineTable = "locations"
    elif has(_CODE, "co_linetable"):
        table = "linetable_310"
    else:
        table = "lnotab_unsigned" if py2 else "lnotab"
    if has("PyLongObject", "long_value.lv_tag"):
        ints: Literal["py2", "ob_size", "lv_tag"] = "lv_tag"
    else:
        ints = "py2" if py2 else "ob_size"
    if has("PyDictKeysObject", "dk_log2_size"):
        keys: Literal["py2", "dk_size", "log2"] = "log2"
    else:
        keys = "py2" if py2 else "dk_size"
    if has("PyDictValues", "valid"):
        dicts: InstanceDicts = "inline_values"
    elif has("PyDictOrValues"):
        dicts = "dict_or_values"
    elif has("PyDictValues"):
        dicts = "values_before"
    else:
        dicts = "dictoffset"
    shims = frozenset(
        lay.constant(name)
        for name in ("FRAME_OWNED_BY_CSTACK", "FRAME_OWNED_BY_INTERPRETER")
        if const(name)
    )
    stackrefs = const("sizeof(_PyStackRef)")
    return Model(
        frames=frames,
        entry_flag=has(_IFRAME, "is_entry"),
        shim_owners=shims,
        line_table=table,
        py2_objects=py2,
        dict_keys=keys,
        ints=ints,
        instance_dicts=dicts,
        localsplus="interpreter_frame" if has(_IFRAME, "localsplus") else "frame_object",
        qualnames_from_self=not has(_CODE, "co_qualname"),
        gil=_first_present(
            lay,
            [
                ("PyInterpreterState", "ceval.gil", "interpreter"),
                ("_PyRuntimeState", "gilstate.tstate_current", "runtime"),
            ],
        ),
        gc=_first_present(
            lay,
            [
                ("PyInterpreterState", "gc.collecting", "interpreter"),
                ("_PyRuntimeState", "gc.collecting", "runtime"),
            ],
        ),
        stackref_tags=lay.constant("Py_TAG_BITS") if stackrefs else 0,
        tagged_int=lay.constant("Py_INT_TAG") if stackrefs and const("Py_INT_TAG") else None,
        tagged_shift=lay.constant("Py_TAGGED_SHIFT") if const("Py_TAGGED_SHIFT") else 2,
        free_threaded=has("PyObject", "ob_tid"),
        vectorcall=has("PyTypeObject", "tp_vectorcall_offset"),
        raised="object" if has(_TS, "current_exception") else "triple",
        handled=_handled(lay),
    )


def _handled(lay: Layout) -> Handled:
    if lay.has(_TS, "exc_value"):
        return "thread_state"
    return "item_triples" if lay.has(_ITEM, "exc_type") else "items"
