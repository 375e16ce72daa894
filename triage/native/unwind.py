"""Unwinding a thread's native stack from its registers, with each module's call-frame
information (`cfi`), and naming each frame's function from the module's symbols.

x86-64 only (DWARF register numbers below). A walk stops at the first address no loaded
module covers, where no FDE applies, where a rule needs a DWARF expression, or where the
stack would not grow; frames found until then are kept.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

from triage.coredump.memory import CoreMemory
from triage.coredump.symbols import ElfSymbols, load_symbols
from triage.errors import AddressError
from triage.native.cfi import CallFrames

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


def debug_file(build_id: str | None, roots: tuple[str, ...] = ()) -> str | None:
    """The separate debug file of a build: in each sysroot's `usr/lib/debug` (the
    --lib-search-root directories: the crashed machine's files, debug packages included),
    then in this machine's."""
    if not build_id or len(build_id) < 3:
        return None
    name = f".build-id/{build_id[:2]}/{build_id[2:]}.debug"
    for base in [*(os.path.join(r, DEBUG_ROOT.lstrip("/")) for r in roots), DEBUG_ROOT]:
        path = os.path.join(base, name)
        if os.path.isfile(path):
            return path
    return None


@dataclass
class Module:
    """A loaded ELF file: where it is mapped; its symbols and CFI are read on first use."""

    path: str
    local: str
    start: int
    end: int
    build_id: str | None = None
    debug_roots: tuple[str, ...] = ()
    """Sysroots whose usr/lib/debug may hold the file's separate debug file."""
    _symbols: ElfSymbols | None = field(default=None, repr=False)
    _cfi: CallFrames | None = field(default=None, repr=False)

    @property
    def symbols(self) -> ElfSymbols:
        """The symbols to name functions by: those of the file's separate debug file when
        this machine has one (a full .symtab: static functions too), else the file's own."""
        if self._symbols is None:
            debug = debug_file(self.build_id, self.debug_roots)
            try:
                self._symbols = load_symbols(debug) if debug else None
            except (OSError, ValueError):
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
            self._cfi = CallFrames(self.local)
        return self._cfi


@dataclass(frozen=True, slots=True)
class NativeFrame:
    """One native frame: its instruction address and what it is in."""

    pc: int
    module: str | None
    function: str | None
    offset: int | None


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


def unwind(registers: dict[str, int], memory: CoreMemory, modules: Modules) -> list[NativeFrame]:
    """The native frames of a thread, newest first, from its NT_PRSTATUS registers."""
    regs = {n: registers[name] for n, name in DWARF_REGISTERS.items() if name in registers}
    regs[RETURN_ADDRESS] = registers["rip"]
    frames: list[NativeFrame] = []
    newest = True
    while len(frames) < MAX_FRAMES:
        pc = regs.get(RETURN_ADDRESS)
        if not pc:
            break
        module = modules.at(pc)
        # A return address points after the call: look up the call itself.
        lookup = pc if newest else pc - 1
        frames.append(_frame(module, pc, lookup))
        if module is None:
            break
        try:
            caller = _caller(regs, module.cfi.row(lookup - module.bias), memory)
        except (AddressError, OSError, ValueError):
            break
        if caller is None:
            break
        regs, newest = caller, False
    return frames


def _caller(regs: dict[int, int], row, memory: CoreMemory) -> dict[int, int] | None:
    """The caller's registers under `row`'s rules, or None where they cannot be known."""
    if row is None or row.cfa_register is None or row.cfa_register not in regs:
        return None
    cfa = regs[row.cfa_register] + row.cfa_offset
    caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
    for reg, rule in row.registers.items():
        kind = rule.type
        if kind == "OFFSET":
            caller[reg] = memory.u64(cfa + rule.arg)
        elif kind == "VAL_OFFSET":
            caller[reg] = cfa + rule.arg
        elif kind == "REGISTER" and rule.arg in regs:
            caller[reg] = regs[rule.arg]
        elif kind == "SAME_VALUE" and reg in regs:
            caller[reg] = regs[reg]
        elif kind == "UNDEFINED":
            caller.pop(reg, None)
        elif kind not in ("REGISTER", "SAME_VALUE"):
            return None  # a DWARF expression: not followed
    caller[RSP] = cfa
    if not caller.get(RETURN_ADDRESS) or cfa <= regs.get(RSP, 0):
        return None
    return caller


def _frame(module: Module | None, pc: int, lookup: int) -> NativeFrame:
    if module is None:
        return NativeFrame(pc, None, None, None)
    try:
        found = module.symbols.symbolize(lookup - module.bias)
    except (OSError, ValueError):
        found = None
    if found is None:
        return NativeFrame(pc, module.path, None, None)
    name, offset = found
    return NativeFrame(pc, module.path, name, offset + (pc - lookup))
