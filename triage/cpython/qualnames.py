"""Qualified names for interpreters that do not record them (before 3.11).

A code object learnt its `co_qualname` only in 3.11. Before, a method's frame still says
which class it belongs to: its first argument (`self` or `cls`) leads to a class whose MRO
holds the function object running this very code, and that function knows its
`__qualname__` (3.3+; on 2.7 the defining class's name is used). Plain and nested functions
get no name here (None): the caller shows co_name.
"""

from __future__ import annotations

from triage.cpython.code import CodeInfo
from triage.cpython.containers import dict_get_str
from triage.cpython.fields import Field, Offsets, Optional, Size
from triage.cpython.objects import ObjectReader
from triage.errors import ReadError

Py_TPFLAGS_TYPE_SUBCLASS = 1 << 31
FIRST_ARGUMENTS = ("self", "cls")


class QualnameFields(Offsets, when=lambda m: m.qualnames_from_self):
    """A frame's first argument, its class's MRO and namespaces, their functions."""

    f_localsplus = Field("PyFrameObject", "f_localsplus")
    co_argcount = Field("PyCodeObject", "co_argcount")
    co_varnames = Field("PyCodeObject", "co_varnames")
    tp_mro = Field("PyTypeObject", "tp_mro")
    tp_dict = Field("PyTypeObject", "tp_dict")
    func_code = Field("PyFunctionObject", "func_code")
    func_qualname = Optional("PyFunctionObject", "func_qualname")
    object_size = Size("PyObject")


class QualnameFinder:
    """Finds `Class.method` for frames of interpreters without co_qualname."""

    def __init__(self, objects: ObjectReader) -> None:
        self.objects = objects
        self.memory = objects.memory
        self.enabled = objects.model.qualnames_from_self
        if not self.enabled:
            return
        self.f = objects.fields(QualnameFields)
        self._first_arg: dict[int, str | None] = {}
        self._found: dict[tuple[int, int], str | None] = {}

    def qualname(self, frame: int, code: CodeInfo) -> str | None:
        """`Class.method` when the frame runs a method found through its first argument."""
        if not self.enabled:
            return None
        try:
            first = self._first_argument(code)
            if first is None:
                return None
            value = self.memory.u64(frame + self.f.f_localsplus)
            if not value:
                return None
            cls = value if first == "cls" else self.objects.type_of(value)
            if first == "cls" and not self._is_type(cls):
                return None
            key = (code.address, cls)
            if key not in self._found:
                self._found[key] = self._search(cls, code)
            return self._found[key]
        except ReadError:
            return None

    def _first_argument(self, code: CodeInfo) -> str | None:
        if code.address not in self._first_arg:
            name = None
            if self.memory.i32(code.address + self.f.co_argcount) >= 1:
                names = self.objects.tuple_items(self.memory.u64(code.address + self.f.co_varnames))
                if names:
                    text = self.objects.text(names[0])
                    name = text if text in FIRST_ARGUMENTS else None
            self._first_arg[code.address] = name
        return self._first_arg[code.address]

    def _is_type(self, obj: int) -> bool:
        tp = self.objects.type_of(obj)
        return bool(self.memory.u64(tp + self.objects.tp_flags) & Py_TPFLAGS_TYPE_SUBCLASS)

    def _search(self, cls: int, code: CodeInfo) -> str | None:
        mro = self.memory.u64(cls + self.f.tp_mro)
        for klass in self.objects.tuple_items(mro) if mro else [cls]:
            namespace = self.memory.u64(klass + self.f.tp_dict)
            if not namespace:
                continue
            attr = dict_get_str(self.objects, namespace, self._member_name(klass, code.name))
            if not attr:
                continue
            func = self._function(attr)
            if func and self.memory.u64(func + self.f.func_code) == code.address:
                if self.f.func_qualname is not None:
                    return self.objects.text(self.memory.u64(func + self.f.func_qualname))
                return f"{self._class_name(klass)}.{code.name}"
        return None

    def _member_name(self, klass: int, name: str) -> str:
        """The key of `name` in the class namespace: private names are mangled there."""
        if name.startswith("__") and not name.endswith("__"):
            owner = self._class_name(klass).lstrip("_")
            if owner:
                return f"_{owner}{name}"
        return name

    def _function(self, attr: int) -> int | None:
        kind = self.objects.type_name(attr)
        if kind == "function":
            return attr
        if kind in ("classmethod", "staticmethod"):
            inner = self.memory.u64(attr + self.f.object_size)  # the wrapped callable
            return inner if inner and self.objects.type_name(inner) == "function" else None
        return None

    def _class_name(self, klass: int) -> str:
        raw = self.memory.cstring(self.memory.u64(klass + self.objects.tp_name), 256)
        return raw.decode("utf-8", "replace").rsplit(".", 1)[-1]
