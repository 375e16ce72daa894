"""Unwinding a thread's native stack from its registers, with each module's call-frame
information (`cfi`), and naming each frame's function from the module's symbols.

x86-64 only (DWARF register numbers below). A walk stops at the first address no loaded
module covers, where no FDE applies, where a rule needs a DWARF expression, or where the
stack would not grow; frames found until then are kept.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from triage.coredump.elf import DAMAGED_FILE
from triage.coredump.memory import CoreMemory
from triage.coredump.symbols import ElfSymbols, load_symbols
from triage.errors import AddressError
from triage.native.cfi import (
    EXPRESSION,
    OFFSET,
    REGISTER,
    SAME_VALUE,
    UNDEFINED,
    VAL_OFFSET,
    CallFrames,
    CfiError,
    Row,
)
from triage.native.dwarf import DebugInfo, Location
from triage.native.leb128 import sleb as _sleb
from triage.native.leb128 import uleb as _uleb

RSP, RETURN_ADDRESS = 7, 16
CALLEE_SAVED = (3, 6, 12, 13, 14, 15)  # rbx, rbp, r12-r15 keep their values across calls
DWARF_REGISTERS = {
    0: "rax",
    1: "rdx",
    2: "rcx",
    3: "rbx",
    4: "rsi",
    5: "rdi",
    6: "rbp",
    7: "rsp",
    **{n: f"r{n}" for n in range(8, 16)},
    16: "rip",
}
MAX_FRAMES = 1024

#: Where distributions install separate debug files, by build-id (Debian's -dbg/-dbgsym
#: packages, Fedora's debuginfo): DEBUG_ROOT/.build-id/NN/NNNN...debug.
DEBUG_ROOT = "/usr/lib/debug"


def debug_file(
    build_id: str | None,
    roots: tuple[str, ...] = (),
    local: str | None = None,
    dirs: tuple[str, ...] = (),
) -> str | None:
    """The separate debug file of a build, looked for as gdb does: by build-id under each
    sysroot's `usr/lib/debug` (the --lib-search-root directories: the crashed machine's files,
    debug packages included), under this machine's, and in each of `dirs` (the
    --lib-search-path entries); then, for the file at `local`, by the name its
    `.gnu_debuglink` gives: next to it, in its `.debug/`, under the debug directories."""
    bases = [os.path.join(r, DEBUG_ROOT.lstrip("/")) for r in roots] + [DEBUG_ROOT, *dirs]
    if build_id and len(build_id) >= 3:
        name = os.path.join(".build-id", build_id[:2], f"{build_id[2:]}.debug")
        for base in bases:
            path = os.path.join(base, name)
            if os.path.isfile(path):
                return path
    link = _debuglink(local) if local else None
    if link and local:
        here = os.path.dirname(os.path.realpath(local))
        places = [here, os.path.join(here, ".debug"), *dirs]
        places += [os.path.join(b, here.lstrip("/")) for b in bases[: len(roots) + 1]]
        for place in places:
            path = os.path.join(place, link)
            if os.path.isfile(path) and os.path.realpath(path) != os.path.realpath(local):
                return path
    return None


def _debuglink(local: str) -> str | None:
    """The file name in an ELF file's `.gnu_debuglink` section, if it has one."""
    try:
        parsed = load_symbols(local)
        section = parsed.sections.get(".gnu_debuglink")
        if section is None or not section.size:
            return None
        with open(local, "rb") as stream:
            stream.seek(section.offset)
            raw = stream.read(min(section.size, 4096))
    except DAMAGED_FILE:
        return None
    name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return name if name and "/" not in name else None


_V = TypeVar("_V")


class _Bounded(OrderedDict[str, _V]):
    """A dict that forgets its least recently used entries beyond `limit` entries, or beyond
    `budget` bytes as `weigh` counts them (what an entry holds grows as it is used)."""

    def __init__(
        self, limit: int, budget: int | None = None, weigh: Callable[[_V], int] | None = None
    ) -> None:
        super().__init__()
        self.limit = limit
        self.budget = budget
        self.weigh = weigh

    def get_or(self, key: str, make: Callable[[], _V]) -> _V:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.limit or (len(self) > 1 and self._over_budget()):
            self.popitem(last=False)
        return value

    def _over_budget(self) -> bool:
        if self.budget is None or self.weigh is None:
            return False
        return sum(self.weigh(v) for v in self.values()) > self.budget


def _dwarf_bytes(dwarf: DebugInfo | None) -> int:
    return dwarf.resident_bytes() if dwarf is not None else 0


#: Parsed call-frame information and DWARF, by build-id (else path): a sweep worker's next
#: core of the same build reuses them. Bounded: a fleet of many builds does not grow a worker
#: without end. The DWARF of 64 builds' files fits unless their sections read so far pass
#: 256 MB (a libpython's are 5-20 MB): a sweep cycling through a few builds' cores, as a
#: night's does, finds them all here.
_CFI_CACHE: _Bounded[CallFrames] = _Bounded(64)
_DWARF_CACHE: _Bounded[DebugInfo | None] = _Bounded(64, budget=256 << 20, weigh=_dwarf_bytes)


@dataclass
class Module:
    """A loaded ELF file: where it is mapped; its symbols, CFI and DWARF are read on first
    use (and kept by build-id, see the caches above)."""

    path: str
    local: str
    start: int
    end: int
    build_id: str | None = None
    debug_roots: tuple[str, ...] = ()
    """Sysroots whose usr/lib/debug may hold the file's separate debug file."""
    debug_dirs: tuple[str, ...] = ()
    """Directories of the library search path, where debug files may lie too."""
    name: str | None = None
    """The name the dynamic linker loaded it by (`libffi.so.8`), when the link map says."""
    problem: str | None = None
    """Why the file cannot be read (cut short, overwritten): its frames are then unnamed, and
    unwound through by frame pointers; said once as a warning (`Modules.warnings`)."""
    _symbols: ElfSymbols | None = field(default=None, repr=False)
    _readable: bool | None = field(default=None, repr=False)
    _cfi: CallFrames | None = field(default=None, repr=False)
    _cfi_failed: bool = field(default=False, repr=False)
    _debug: str | None = field(default=None, repr=False)
    _debug_found: bool = field(default=False, repr=False)

    def damaged(self, exc: Exception) -> None:
        """Record why the file cannot be read (the first reason is kept)."""
        if self.problem is None:
            self.problem = str(exc) or type(exc).__name__

    @property
    def readable(self) -> bool:
        """Whether the file's headers and symbols can be read (where it is loaded: its bias)."""
        if self._readable is None:
            try:
                self.bias  # noqa: B018 -- reads the headers and symbol tables
                self._readable = True
            except DAMAGED_FILE as exc:
                self.damaged(exc)
                self._readable = False
        return self._readable

    def row(self, address: int) -> Row | None:
        """The call-frame rules at a load address, or None: no rule covers it, or the file's
        call-frame information cannot be read (then `problem` says why)."""
        if not self.readable or self._cfi_failed:
            return None
        try:
            return self.cfi.row(address - self.bias)
        except DAMAGED_FILE as exc:
            self.damaged(exc)
            self._cfi_failed = True
            return None

    @property
    def debug(self) -> str | None:
        """The file's separate debug file, if one is found (see `debug_file`)."""
        if not self._debug_found:
            self._debug = debug_file(self.build_id, self.debug_roots, self.local, self.debug_dirs)
            self._debug_found = True
        return self._debug

    @property
    def symbols(self) -> ElfSymbols:
        """The symbols to name functions by: those of the file's separate debug file when
        one is found (a full .symtab: static functions too), else the file's own."""
        if self._symbols is None:
            debug = self.debug
            try:
                self._symbols = load_symbols(debug) if debug else None
            except DAMAGED_FILE:
                self._symbols = None
            if self._symbols is None or not self._symbols.tables:
                self._symbols = load_symbols(self.local, self.build_id)
        return self._symbols

    @property
    def bias(self) -> int:
        """Load address minus link address (0 for a fixed-address executable)."""
        return self.symbols.load_bias(self.start)

    @property
    def cfi(self) -> CallFrames:
        if self._cfi is None:
            self._cfi = _CFI_CACHE.get_or(
                self.build_id or self.local, lambda: CallFrames(self.local)
            )
        return self._cfi

    @property
    def dwarf(self) -> DebugInfo | None:
        """The DWARF to find source lines and inlined calls in: the debug file's, else the
        file's own; None when neither has any."""

        def load() -> DebugInfo | None:
            for candidate in (self.debug, self.local):
                if candidate is None:
                    continue
                try:
                    found = DebugInfo.open(candidate)
                except DAMAGED_FILE:
                    found = None
                if found is not None:
                    return found
            return None

        return _DWARF_CACHE.get_or(self.build_id or self.local, load)


@dataclass(frozen=True, slots=True)
class NativeFrame:
    """One native frame: its instruction address and what it is in."""

    pc: int
    module: str | None
    function: str | None
    offset: int | None
    locations: tuple[Location, ...] = ()
    """Its source position from DWARF: the calls inlined at the address, innermost first,
    then the function itself (`Location.function` None: `function` names it); empty without
    debug information."""
    by_frame_pointer: bool = False
    """Found through the frame pointer of the frame below it, which had no call-frame
    information: likely right for code built with frame pointers, a guess otherwise."""
    exact: bool = False
    """`pc` is the instruction itself (the newest frame, a signal trampoline, a frame a
    signal interrupted), not a return address: it is looked up as is, not `pc - 1`."""

    @property
    def lookup(self) -> int:
        """The address whose function and line the frame is at."""
        return self.pc if self.exact else self.pc - 1


class Modules:
    """The loaded modules, found by address."""

    def __init__(self, modules: list[Module]) -> None:
        self.modules = sorted(modules, key=lambda m: m.start)
        self.starts = [m.start for m in self.modules]

    def at(self, address: int) -> Module | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.modules[i].end:
            return self.modules[i]
        return None

    def warnings(self) -> list[str]:
        """One line for each file that could not be read, naming it."""
        out = []
        for module in self.modules:
            if module.problem is None:
                continue
            mapped = "" if module.local == module.path else f" (mapped as {module.path})"
            out.append(
                f"{module.local}{mapped} cannot be read ({module.problem}); its native frames "
                f"have no function names or lines: give an intact copy of it"
            )
        return out


def unwind(registers: dict[str, int], memory: CoreMemory, modules: Modules) -> list[NativeFrame]:
    """The native frames of a thread, newest first, from its NT_PRSTATUS registers. Where no
    call-frame information covers a frame's code, its caller is found by the frame pointer
    (`rbp`: the saved rbp, then the return address), and marked `by_frame_pointer`."""
    regs = {n: registers[name] for n, name in DWARF_REGISTERS.items() if name in registers}
    regs[RETURN_ADDRESS] = registers["rip"]
    frames: list[NativeFrame] = []
    exact = True  # the newest frame's pc is the instruction it was at
    guessed = False
    while len(frames) < MAX_FRAMES:
        pc = regs.get(RETURN_ADDRESS)
        if not pc:
            break
        module = modules.at(pc)
        # A return address points after the call: look up the call itself. (glibc's signal
        # trampoline has its FDE start a byte early so that this lookup finds it too.)
        lookup = pc if exact else pc - 1
        # No rule (or a file that cannot be read): the frame pointer, below.
        row = module.row(lookup) if module is not None else None
        trampoline = row is not None and row.signal_frame
        frame = _frame(module, pc, pc if exact or trampoline else lookup)
        frames.append(
            dataclasses.replace(frame, by_frame_pointer=guessed, exact=exact or trampoline)
        )
        if module is None:
            break
        try:
            caller = _caller(regs, row, memory) if row is not None else None
            guessed = row is None
            if row is None:
                caller = _by_frame_pointer(regs, memory)
        except (AddressError, CfiError, *DAMAGED_FILE):
            break
        if caller is None:
            break
        regs, exact = caller, trampoline  # below a trampoline: the interrupted instruction
    return frames


def _by_frame_pointer(regs: dict[int, int], memory: CoreMemory) -> dict[int, int] | None:
    """The caller's registers of a function that keeps the frame-pointer chain (push rbp;
    mov rsp, rbp): rbp points at the saved rbp, the return address above it."""
    rbp, rsp = regs.get(6), regs.get(RSP)
    if not rbp or rsp is None or rbp < rsp or rbp - rsp > 1 << 24 or rbp & 7:
        return None
    caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
    caller[6] = memory.u64(rbp)
    caller[RETURN_ADDRESS] = memory.u64(rbp + 8)
    caller[RSP] = rbp + 16
    return caller if caller[RETURN_ADDRESS] else None


def _caller(regs: dict[int, int], row: Row | None, memory: CoreMemory) -> dict[int, int] | None:
    """The caller's registers under `row`'s rules, or None where they cannot be known."""
    if row is None:
        return None
    if row.cfa_expression is not None:
        cfa = evaluate(row.cfa_expression, regs, memory)
    elif row.cfa_register is not None and row.cfa_register in regs:
        cfa = regs[row.cfa_register] + row.cfa_offset
    else:
        return None
    if cfa is None:
        return None
    caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
    for reg, (kind, arg) in row.registers.items():
        if isinstance(arg, bytes):  # EXPRESSION (an address holding the value), VAL_EXPRESSION
            value = evaluate(arg, regs, memory, cfa)
            if value is None:
                return None
            caller[reg] = memory.u64(value) if kind == EXPRESSION else value
        elif kind == OFFSET:
            caller[reg] = memory.u64(cfa + arg)
        elif kind == VAL_OFFSET:
            caller[reg] = cfa + arg
        elif kind == REGISTER:
            if arg in regs:
                caller[reg] = regs[arg]
        elif kind == SAME_VALUE:
            if reg in regs:
                caller[reg] = regs[reg]
        elif kind == UNDEFINED:
            caller.pop(reg, None)
    caller[RSP] = cfa
    if not caller.get(RETURN_ADDRESS) or (cfa <= regs.get(RSP, 0) and RSP not in row.registers):
        return None
    return caller


_MASK = (1 << 64) - 1


def evaluate(
    expression: bytes, regs: dict[int, int], memory: CoreMemory, push: int | None = None
) -> int | None:
    """A DWARF expression of call-frame information, on a stack machine (`push`: the CFA,
    pushed first for register rules). None for what it cannot compute here (registers the
    core does not say, operations that need the program's context)."""
    stack: list[int] = [] if push is None else [push]
    pos = 0
    end = len(expression)
    steps = 0
    while pos < end:
        steps += 1
        if steps > 1000:
            return None
        op = expression[pos]
        pos += 1
        if 0x30 <= op <= 0x4F:  # lit0-31
            stack.append(op - 0x30)
        elif 0x70 <= op <= 0x8F:  # breg0-31
            offset, pos = _sleb(expression, pos)
            if op - 0x70 not in regs:
                return None
            stack.append((regs[op - 0x70] + offset) & _MASK)
        elif 0x50 <= op <= 0x6F:  # reg0-31: a location, not a value
            return None
        elif op in _CONSTANTS:
            width, signed = _CONSTANTS[op]
            stack.append(int.from_bytes(expression[pos : pos + width], "little", signed=signed))
            pos += width
        elif op == 0x10:  # constu
            value, pos = _uleb(expression, pos)
            stack.append(value)
        elif op == 0x11:  # consts
            value, pos = _sleb(expression, pos)
            stack.append(value & _MASK)
        elif op == 0x92:  # bregx
            reg, pos = _uleb(expression, pos)
            offset, pos = _sleb(expression, pos)
            if reg not in regs:
                return None
            stack.append((regs[reg] + offset) & _MASK)
        elif op == 0x12:  # dup
            stack.append(stack[-1])
        elif op == 0x13:  # drop
            stack.pop()
        elif op == 0x14:  # over
            stack.append(stack[-2])
        elif op == 0x15:  # pick
            stack.append(stack[-1 - expression[pos]])
            pos += 1
        elif op == 0x16:  # swap
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif op == 0x17:  # rot
            stack[-1], stack[-2], stack[-3] = stack[-2], stack[-3], stack[-1]
        elif op == 0x06:  # deref
            stack.append(memory.u64(stack.pop()))
        elif op == 0x94:  # deref_size
            size = expression[pos]
            pos += 1
            stack.append(int.from_bytes(memory.read(stack.pop(), size), "little"))
        elif op == 0x23:  # plus_uconst
            value, pos = _uleb(expression, pos)
            stack.append((stack.pop() + value) & _MASK)
        elif op in _BINARY:
            b, a = stack.pop(), stack.pop()
            result = _BINARY[op](a, b)
            if result is None:
                return None
            stack.append(result & _MASK)
        elif op == 0x19:  # abs
            value = stack.pop()
            stack.append(_signed(value) if value >> 63 == 0 else (-_signed(value)) & _MASK)
        elif op == 0x1F:  # neg
            stack.append((-stack.pop()) & _MASK)
        elif op == 0x20:  # not
            stack.append(~stack.pop() & _MASK)
        elif op == 0x2F:  # skip
            pos += 3 + int.from_bytes(expression[pos : pos + 2], "little", signed=True)
        elif op == 0x28:  # bra
            target = int.from_bytes(expression[pos : pos + 2], "little", signed=True)
            pos += 2
            if stack.pop():
                pos += target
        elif op == 0x96:  # nop
            continue
        else:
            return None
    return stack[-1] if stack else None


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


_CONSTANTS = {
    0x08: (1, False),
    0x09: (1, True),
    0x0A: (2, False),
    0x0B: (2, True),
    0x0C: (4, False),
    0x0D: (4, True),
    0x0E: (8, False),
    0x0F: (8, True),
}
_BINARY: dict[int, Callable[[int, int], int | None]] = {
    0x1A: lambda a, b: a & b,  # and
    0x1B: lambda a, b: None if not b else int(_signed(a) / _signed(b)),  # div
    0x1C: lambda a, b: a - b,  # minus
    0x1D: lambda a, b: None if not b else a % b,  # mod
    0x1E: lambda a, b: a * b,  # mul
    0x21: lambda a, b: a | b,  # or
    0x22: lambda a, b: a + b,  # plus
    0x24: lambda a, b: a << b if b < 64 else 0,  # shl
    0x25: lambda a, b: a >> b,  # shr
    0x26: lambda a, b: _signed(a) >> b,  # shra
    0x27: lambda a, b: a ^ b,  # xor
    0x29: lambda a, b: int(a == b),  # eq
    0x2A: lambda a, b: int(_signed(a) >= _signed(b)),  # ge
    0x2B: lambda a, b: int(_signed(a) > _signed(b)),  # gt
    0x2C: lambda a, b: int(_signed(a) <= _signed(b)),  # le
    0x2D: lambda a, b: int(_signed(a) < _signed(b)),  # lt
    0x2E: lambda a, b: int(a != b),  # ne
}


def _frame(module: Module | None, pc: int, lookup: int) -> NativeFrame:
    if module is None:
        return NativeFrame(pc, None, None, None)
    library = module.name or module.path
    if not module.readable:
        return NativeFrame(pc, library, None, None)
    try:
        found = module.symbols.symbolize(lookup - module.bias)
    except DAMAGED_FILE as exc:
        module.damaged(exc)
        found = None
    if found is None:
        return NativeFrame(pc, library, None, None)
    name, offset = found
    return NativeFrame(pc, library, name, offset + (pc - lookup))


def add_locations(
    stacks: dict[int, list[NativeFrame]],
    modules: Modules,
    until: Callable[[NativeFrame], bool] | None = None,
) -> None:
    """Give frames their source locations (`NativeFrame.locations`), asking each module's
    DWARF once for all of its addresses: every frame, or with `until`, each thread's frames
    newer than the first for which it is true (all of a thread that has none)."""
    wanted: dict[int, tuple[Module, set[int]]] = {}
    for frames in stacks.values():
        for frame in _newer_than(frames, until):
            module = modules.at(frame.pc)
            if module is not None and module.readable:
                wanted.setdefault(id(module), (module, set()))[1].add(frame.lookup - module.bias)
    found: dict[tuple[int, int], tuple[Location, ...]] = {}
    for key, (module, addresses) in wanted.items():
        try:
            dwarf = module.dwarf
            located = dwarf.locate_many(sorted(addresses)) if dwarf is not None else {}
        except DAMAGED_FILE as exc:
            module.damaged(exc)
            located = {}
        for address, where in located.items():
            if where:
                found[key, address] = tuple(where)
    for tid, frames in stacks.items():
        out = []
        for frame in frames:
            module = modules.at(frame.pc)
            if module is not None and module.readable:
                locations = found.get((id(module), frame.lookup - module.bias))
                if locations:
                    frame = dataclasses.replace(frame, locations=locations)
            out.append(frame)
        stacks[tid] = out


def _newer_than(
    frames: list[NativeFrame], until: Callable[[NativeFrame], bool] | None
) -> list[NativeFrame]:
    """The frames before the first that `until` holds for (all of them without one)."""
    if until is None:
        return frames
    for i, frame in enumerate(frames):
        if until(frame):
            return frames[:i]
    return frames
