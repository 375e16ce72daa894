"""The structure members each reader needs, declared next to the reader and resolved once per
layout.

    class ThreadFields(Offsets):
        next = Field("PyThreadState", "next", debug="thread_state.next")
        native_tid = Optional("PyThreadState", "native_thread_id")

    fields = ThreadFields(layout)   # resolved now; a required member the table lacks raises
    fields.next                     # an int: the byte offset
    fields.native_tid               # an int, or None where the version has no such member

A member may have several names (`Field("PyInterpreterState", "threads.head", "tstate_head")`):
the first one the layout has is used. `debug=` names the member's entry in CPython's own
`_Py_DebugOffsets` (3.13+), so a core can correct the table (`debug_offsets.overlay`).
A declaration class may say when it applies (`class F(Offsets, when=lambda m: ...)`, given
the layout's `Model`); the others apply to every layout.

These declarations are the one list of what the engine reads: `scripts/derive_layouts.py`
derives the structs they name, `debug_offsets` maps `_Py_DebugOffsets` onto them, and
tests/test_layouts.py checks every table against every declaration that applies to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from triage.cpython.layout import Bitfield, Layout, MissingField

if TYPE_CHECKING:
    from triage.cpython.model import Model

__all__ = [
    "BitField",
    "Constant",
    "Field",
    "Member",
    "Offsets",
    "Optional",
    "OptionalConstant",
    "Size",
    "declarations",
]

T = TypeVar("T")


class Member(Generic[T]):
    """One declared member of a layout: resolved against a layout, read on an instance."""

    struct: str = ""
    names: tuple[str, ...] = ()
    debug: str | None = None
    required: bool = True

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    @overload
    def __get__(self, obj: None, owner: type) -> Member[T]: ...
    @overload
    def __get__(self, obj: Offsets, owner: type) -> T: ...
    def __get__(self, obj: Offsets | None, owner: type) -> Member[T] | T:
        if obj is None:
            return self
        raise AttributeError(f"{owner.__name__}.{self.attr} was not resolved")

    def resolve(self, layout: Layout) -> T:
        raise NotImplementedError

    def wanted(self) -> Iterator[tuple[str, str]]:
        """(struct, member) pairs this declaration may read, for the derivation script."""
        for name in self.names:
            yield self.struct, name

    def _first(self, layout: Layout) -> str | None:
        return next((n for n in self.names if layout.has(self.struct, n)), None)

    def _missing(self, layout: Layout) -> MissingField:
        major, minor = layout.version
        names = " or ".join(repr(n) for n in self.names)
        return MissingField(f"Python {major}.{minor}: {self.struct} has no field {names}")


class Field(Member[int]):
    """The byte offset of a member (the first of `names` the layout has); required."""

    def __init__(self, struct: str, *names: str, debug: str | None = None) -> None:
        self.struct, self.names, self.debug = struct, names, debug

    def resolve(self, layout: Layout) -> int:
        name = self._first(layout)
        if name is None:
            raise self._missing(layout)
        return layout.offset(self.struct, name)


class Optional(Member["int | None"]):
    """The byte offset of a member that only some versions have; None elsewhere."""

    required = False

    def __init__(self, struct: str, *names: str, debug: str | None = None) -> None:
        self.struct, self.names, self.debug = struct, names, debug

    def resolve(self, layout: Layout) -> int | None:
        name = self._first(layout)
        return None if name is None else layout.offset(self.struct, name)


class Size(Member[int]):
    """`sizeof(struct)`."""

    def __init__(self, struct: str, debug: str | None = None) -> None:
        self.struct, self.names, self.debug = struct, (), debug

    def resolve(self, layout: Layout) -> int:
        return layout.size(self.struct)

    def wanted(self) -> Iterator[tuple[str, str]]:
        yield self.struct, ""


class BitField(Member[Bitfield]):
    """Where a bitfield lives (`state.kind`)."""

    def __init__(self, struct: str, name: str) -> None:
        self.struct, self.names = struct, (name,)

    def resolve(self, layout: Layout) -> Bitfield:
        return layout.bitfield(self.struct, self.names[0])


class Constant(Member[int]):
    """A constant of the table (enumerators, typedef sizes, macros read from the headers)."""

    def __init__(self, name: str) -> None:
        self.names = (name,)

    def resolve(self, layout: Layout) -> int:
        return layout.constant(self.names[0])

    def wanted(self) -> Iterator[tuple[str, str]]:
        return iter(())


class OptionalConstant(Member["int | None"]):
    """A constant only some versions have; None elsewhere."""

    required = False

    def __init__(self, name: str) -> None:
        self.names = (name,)

    def resolve(self, layout: Layout) -> int | None:
        name = self.names[0]
        return layout.constant(name) if layout.has_constant(name) else None

    def wanted(self) -> Iterator[tuple[str, str]]:
        return iter(())


_REGISTRY: list[type[Offsets]] = []


def _always(model: Model) -> bool:
    return True


class Offsets:
    """A reader's declared members; an instance holds them resolved against one layout."""

    members: ClassVar[dict[str, Member[Any]]] = {}
    applies: ClassVar[Callable[[Model], bool]] = staticmethod(_always)

    def __init_subclass__(cls, when: Callable[[Model], bool] | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.members = {
            name: value
            for klass in reversed(cls.__mro__)
            for name, value in vars(klass).items()
            if isinstance(value, Member)
        }
        if when is not None:
            cls.applies = staticmethod(when)
        _REGISTRY.append(cls)

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        # Members are non-data descriptors: the resolved values, stored on the instance,
        # are plain attributes to the readers' hot paths.
        for name, member in self.members.items():
            self.__dict__[name] = member.resolve(layout)


#: The modules that declare members (importing them registers their declarations).
READER_MODULES = (
    "triage.cpython.objects",
    "triage.cpython.containers",
    "triage.cpython.code",
    "triage.cpython.frames",
    "triage.cpython.variables",
    "triage.cpython.qualnames",
    "triage.cpython.thread_names",
    "triage.cpython.exceptions",
    "triage.cpython.interpreter",
)


def declarations() -> list[type[Offsets]]:
    """Every declaration class of the engine."""
    import importlib

    for module in READER_MODULES:
        importlib.import_module(module)
    return list(_REGISTRY)


def wanted_structs() -> set[str]:
    """Every struct a table must describe: those the declarations and the model read, and the
    `_Py_DebugOffsets` block."""
    from triage.cpython import debug_offsets, model

    found = {m.struct for d in declarations() for m in d.members.values() if m.struct}
    return found | model.INSPECTED_STRUCTS | {debug_offsets.BLOCK}


def wanted_constants() -> list[str]:
    """Every constant the declarations and the model read, sorted."""
    from triage.cpython import model

    found = {
        m.names[0]
        for d in declarations()
        for m in d.members.values()
        if isinstance(m, (Constant, OptionalConstant))
    }
    return sorted(found | set(model.INSPECTED_CONSTANTS))


def check(layout: Layout) -> list[str]:
    """What `layout` lacks of the declarations that apply to its model (empty: complete)."""
    from triage.cpython.model import Model

    model = Model.of(layout)
    problems = []
    for declared in declarations():
        if not declared.applies(model):
            continue
        try:
            declared(layout)
        except MissingField as exc:
            problems.append(f"{declared.__name__}: {exc}")
    return problems
