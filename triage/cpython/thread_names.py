"""Python-level thread names (``threading.Thread.name``) read out of a core.

No thread state holds the name: it lives in the ``threading`` module, whose ``_active`` dict maps
each thread's ident (``threading.get_ident()``, the ``pthread_t`` that the thread state's
``thread_id`` also holds) to its ``Thread`` object (``_MainThread`` and ``_DummyThread`` are
subclasses), whose instance dict holds the name as ``_name`` (``_Thread__name`` on 2.7, where
``self.__name`` is name-mangled).

Reading it walks ``sys.modules`` -> ``threading`` -> ``__dict__`` -> ``_active``. A process that
never imported threading, or memory the core does not hold, simply gives fewer names: nothing
here raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from triage.cpython.containers import dict_get_str, dict_items, instance_attribute, int_value
from triage.cpython.fields import Field, Offsets
from triage.errors import READ_ERRORS

if TYPE_CHECKING:
    from triage.cpython.interpreter import Interpreter

__all__ = ["sys_modules", "thread_names"]

MAX_NAME = 1024  # longer names are cut (a name is a label, not data)
_IDENT_MASK = (1 << 64) - 1  # 2.7's get_ident() is a signed long; thread_id is read unsigned


class ModuleFields(Offsets):
    """A module's namespace."""

    md_dict = Field("PyModuleObject", "md_dict")


def sys_modules(interp: Interpreter, interp_state: int) -> int:
    """The address of ``sys.modules`` of one interpreter (0 if it has none yet)."""
    return interp.memory.u64(interp_state + interp.i_modules)


def thread_names(interp: Interpreter, interp_state: int) -> dict[int, str]:
    """Thread ident (as in ``PyThread.thread_id``) -> ``Thread.name``, for one interpreter.

    Whatever cannot be read is left out; the result may be empty, it never raises.
    """
    objects = interp.objects
    names: dict[int, str] = {}
    try:
        modules = sys_modules(interp, interp_state)
        if not modules:
            return names
        module = dict_get_str(objects, modules, "threading")
        if not module or objects.type_name(module) != "module":
            return names
        md_dict = interp.memory.u64(module + objects.fields(ModuleFields).md_dict)
        if not md_dict:
            return names
        active = dict_get_str(objects, md_dict, "_active")
        if not active:
            return names
        threads = dict_items(objects, active)
    except READ_ERRORS:
        return names
    attribute = "_Thread__name" if objects.py2 else "_name"
    for key, thread in threads:
        try:
            ident = int_value(objects, key) & _IDENT_MASK
            name = instance_attribute(objects, thread, attribute)
            if name:
                names[ident] = objects.text(name)[:MAX_NAME]
        except READ_ERRORS:
            continue
    return names
