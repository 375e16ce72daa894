"""Which native frames a user is shown, and what native frames say of a thread: PyStack's
rules, so that `--native` output reads the same.

Hidden by default (the interpreter's call machinery, which the Python frames already say):
functions whose name starts with `PyEval`, `_PyEval`, `_Py` or `_TAIL_CALL_`, or with one of
the call helpers of older interpreters (`PyObject_Call`, `call_function`, `fast_function`,
`type_call`, ...), or, from 3.8 (vectorcall), whose name contains `vectorcall` in any case.
The eval loop's own frames are not shown either: the Python frames stand in their place.

A thread's status from its native frames: `Garbage collecting` when one of the collector's
functions is on its stack (`collect`, `collect_with_callback`, `collect_generations` up to
3.11, `gc_collect_*` since; PyStack's test of `gc_collect`/`collect` alone misses 3.6-3.11's
callbacks, run from `collect_with_callback`), `Waiting for the GIL` in `take_gil`, `Dropping
the GIL` in `drop_gil` (inlined frames included: `take_gil` usually is).
"""

from __future__ import annotations

from collections.abc import Iterable

HIDDEN_PREFIXES = ("PyEval", "_PyEval", "_Py", "_TAIL_CALL_")
CALL_HELPER_PREFIXES = (
    "PyObject_Call",
    "call_function",
    "classmethoddescr_call",
    "cmpwrapper_call",
    "do_call_core",
    "fast_function",
    "function_call",
    "instance_call",
    "instancemethod_call",
    "methoddescr_call",
    "proxy_call",
    "slot_tp_call",
    "type_call",
    "weakref_call",
    "wrap_call",
    "wrapper_call",
    "wrapperdescr_call",
)

_COLLECTORS = frozenset({"collect", "collect_with_callback", "collect_generations"})

GC_COLLECTING = "Garbage collecting"
WAITING_FOR_GIL = "Waiting for the GIL"
DROPPING_GIL = "Dropping the GIL"


def hidden(name: str | None, vectorcall: bool = True) -> bool:
    """Whether PyStack's display rules hide a native function; `vectorcall`: the interpreter
    has vectorcall (3.8+)."""
    if not name:
        return False
    if name.startswith(HIDDEN_PREFIXES) or name.startswith(CALL_HELPER_PREFIXES):
        return True
    return vectorcall and "vectorcall" in name.lower()


def _base(name: str) -> str:
    """A function's name without the suffixes compilers add to its clones (`.constprop.0`,
    `.isra.0`, `.part.0`, `.cold`, `.lto_priv.0`)."""
    return name.split(".", 1)[0]


def native_status(names: Iterable[str | None]) -> list[str]:
    """What a thread's native function names (physical and inlined) say it was doing."""
    collecting = waiting = dropping = False
    for name in names:
        if not name:
            continue
        base = _base(name)
        collecting = collecting or base in _COLLECTORS or base.startswith("gc_collect")
        waiting = waiting or base == "take_gil"
        dropping = dropping or base == "drop_gil"
    out = []
    if collecting:
        out.append(GC_COLLECTING)
    if waiting:
        out.append(WAITING_FOR_GIL)
    if dropping:
        out.append(DROPPING_GIL)
    return out
