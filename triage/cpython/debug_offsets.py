"""CPython 3.13+ `_Py_DebugOffsets`: the offsets a debugger needs, published by the interpreter
itself at the start of `_PyRuntime`. Overlaid on the newest layout table we have, they let a
newer CPython be read without a new table."""

from __future__ import annotations

import dataclasses

from triage.coredump.memory import CoreMemory
from triage.cpython.layout import Layout, _Struct
from triage.errors import AddressError

# debug-offset name -> (our struct name, our field name); "@size" names sizeof(struct).
# A name of the form "a+b" adds the two debug offsets (an embedded struct plus a member of it).
MAPPING: dict[str, tuple[str, str]] = {
    "runtime_state.interpreters_head": ("_PyRuntimeState", "interpreters.head"),
    "runtime_state.finalizing": ("_PyRuntimeState", "_finalizing"),
    "interpreter_state.id": ("PyInterpreterState", "id"),
    "interpreter_state.next": ("PyInterpreterState", "next"),
    "interpreter_state.threads_head": ("PyInterpreterState", "threads.head"),
    "interpreter_state.imports_modules": ("PyInterpreterState", "imports.modules"),
    "interpreter_state.sysdict": ("PyInterpreterState", "sysdict"),
    "interpreter_state.builtins": ("PyInterpreterState", "builtins"),
    "interpreter_state.ceval_gil": ("PyInterpreterState", "ceval.gil"),
    "interpreter_state.gil_runtime_state_locked": ("PyInterpreterState", "_gil.locked"),
    "interpreter_state.gil_runtime_state_holder": ("PyInterpreterState", "_gil.last_holder"),
    "interpreter_state.gc+gc.collecting": ("PyInterpreterState", "gc.collecting"),
    "thread_state.prev": ("PyThreadState", "prev"),
    "thread_state.next": ("PyThreadState", "next"),
    "thread_state.interp": ("PyThreadState", "interp"),
    "thread_state.current_frame": ("PyThreadState", "current_frame"),
    "thread_state.thread_id": ("PyThreadState", "thread_id"),
    "thread_state.native_thread_id": ("PyThreadState", "native_thread_id"),
    "interpreter_frame.previous": ("_PyInterpreterFrame", "previous"),
    "interpreter_frame.executable": ("_PyInterpreterFrame", "f_executable"),
    "interpreter_frame.instr_ptr": ("_PyInterpreterFrame", "instr_ptr"),
    "interpreter_frame.localsplus": ("_PyInterpreterFrame", "localsplus"),
    "interpreter_frame.owner": ("_PyInterpreterFrame", "owner"),
    "code_object.filename": ("PyCodeObject", "co_filename"),
    "code_object.name": ("PyCodeObject", "co_name"),
    "code_object.qualname": ("PyCodeObject", "co_qualname"),
    "code_object.linetable": ("PyCodeObject", "co_linetable"),
    "code_object.firstlineno": ("PyCodeObject", "co_firstlineno"),
    "code_object.argcount": ("PyCodeObject", "co_argcount"),
    "code_object.localsplusnames": ("PyCodeObject", "co_localsplusnames"),
    "code_object.localspluskinds": ("PyCodeObject", "co_localspluskinds"),
    "code_object.co_code_adaptive": ("PyCodeObject", "co_code_adaptive"),
    "pyobject.ob_type": ("PyObject", "ob_type"),
    "type_object.tp_name": ("PyTypeObject", "tp_name"),
    "type_object.tp_flags": ("PyTypeObject", "tp_flags"),
    "tuple_object.ob_item": ("PyTupleObject", "ob_item"),
    "tuple_object.ob_size": ("PyVarObject", "ob_size"),
    "list_object.ob_item": ("PyListObject", "ob_item"),
    "dict_object.ma_keys": ("PyDictObject", "ma_keys"),
    "dict_object.ma_values": ("PyDictObject", "ma_values"),
    "float_object.ob_fval": ("PyFloatObject", "ob_fval"),
    "long_object.lv_tag": ("PyLongObject", "long_value.lv_tag"),
    "long_object.ob_digit": ("PyLongObject", "long_value.ob_digit"),
    "bytes_object.ob_sval": ("PyBytesObject", "ob_sval"),
    "unicode_object.length": ("PyASCIIObject", "length"),
    "unicode_object.asciiobject_size": ("PyASCIIObject", "@size"),
}


def read_debug_offsets(memory: CoreMemory, runtime: int, base: Layout) -> dict[str, int]:
    """Every member of the `_Py_DebugOffsets` block at `runtime`, parsed with `base`'s layout
    of that struct (u64 each)."""
    fields = base.fields("_Py_DebugOffsets")
    size = base.size("_Py_DebugOffsets")
    raw = memory.read(runtime, size)
    return {
        name: int.from_bytes(raw[off : off + 8], "little")
        for name, off in fields.items()
        if off + 8 <= size and name not in ("cookie", "version")
    }


def overlay(base: Layout, values: dict[str, int], version: tuple[int, int]) -> Layout:
    """`base` with every offset the core publishes replacing the table's, labelled `version`."""
    structs = {
        name: _Struct(s.size, dict(s.fields), dict(s.bitfields))
        for name, s in base._structs.items()
    }
    for key, (struct, field) in MAPPING.items():
        parts = key.split("+")
        try:
            value = sum(values[p] for p in parts)
        except KeyError:
            continue
        entry = structs.get(struct)
        if entry is None:
            continue
        if field == "@size":
            structs[struct] = entry._replace(size=value)
        else:
            entry.fields[field] = value
    return dataclasses.replace(
        base,
        version=version,
        derived_from=f"{base.derived_from} + _Py_DebugOffsets from the core",
        _structs=structs,
    )


def layout_from_core(
    memory: CoreMemory, runtime: int, base: Layout, version: tuple[int, int]
) -> Layout | None:
    """The layout for a 3.13+ core: its debug offsets over `base`; None if unreadable."""
    try:
        return overlay(base, read_debug_offsets(memory, runtime, base), version)
    except AddressError:
        return None
