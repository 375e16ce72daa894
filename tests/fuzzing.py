"""Structure-aware mutation of real cores, shared by tests/test_fuzz.py and scripts/fuzz.py.

A base core is a real core made during the run. Its shape is read once (ELF header, program
headers, the notes' headers, and the bytes a clean analysis of it reads from memory); a
mutation is a short list of patches aimed at one of those structures, or a cut of the file.
Mutations are applied in place on a copy of the core in a RAM-backed directory and undone
after each run, so thousands of them cost no more than their analyses.

What must hold for every mutant (`check`): the analysis returns (no exception escapes, no
hang past `TIME_LIMIT`), its JSON is valid strict UTF-8 that parses back, its text renders, and
no temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Seconds one mutant may take before it counts as a hang.
TIME_LIMIT = 20.0

#: The classes of mutation, in the order the counts are reported.
CLASSES = ("elf_header", "program_headers", "notes", "memory", "truncation", "compressed")
#: Those of an uncompressed core.
ELF_CLASSES = CLASSES[:5]

#: Values that break parsers: limits, sign flips, zero, small counts.
INTERESTING = (
    0,
    1,
    2,
    7,
    8,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x7FFFFFFFFFFFFFFF,
    0x8000000000000000,
    0xFFFFFFFFFFFFFFFF,
)


@dataclasses.dataclass(frozen=True)
class Field:
    """A place in the file worth mutating: its offset, its width in bytes, what it is."""

    offset: int
    size: int
    what: str


@dataclasses.dataclass
class Shape:
    """What a base core is made of, by mutation class."""

    path: Path
    data: bytes
    fields: dict[str, list[Field]]
    pointers: list[int]  # addresses of mapped memory, for plausible wrong pointers
    boundaries: list[int]  # file offsets where structures start or end: cuts worth trying


@dataclasses.dataclass(frozen=True)
class Mutation:
    """Patches (offset, new bytes) and/or a cut of the file at `truncate`."""

    kind: str
    patches: tuple[tuple[int, bytes], ...] = ()
    truncate: int | None = None

    def describe(self) -> str:
        parts = [f"{off:#x}:{data.hex()}" for off, data in self.patches]
        if self.truncate is not None:
            parts.append(f"cut at {self.truncate:#x}")
        return f"{self.kind}[{', '.join(parts)}]"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "patches": [[off, data.hex()] for off, data in self.patches],
            "truncate": self.truncate,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Mutation:
        patches = tuple((int(off), bytes.fromhex(data)) for off, data in obj["patches"])
        return cls(obj["kind"], patches, obj.get("truncate"))


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_NOTE = 1, 4


def shape_of(path: Path, touched: list[tuple[int, int]] | None = None) -> Shape:
    """The fields of the core at `path`; `touched` are (file offset, size) ranges of memory
    a clean analysis reads (see `touched_ranges`)."""
    data = path.read_bytes()
    fields: dict[str, list[Field]] = {k: [] for k in CLASSES}
    if data[:4] != b"\x7fELF":  # a compressed base: its bytes are the target
        step = max(1, len(data) // 4096)
        fields["compressed"] = [Field(off, 1, "byte") for off in range(0, len(data), step)]
        return Shape(path, data, fields, [], [0, 4, 16, len(data) // 2, len(data) - 8])
    (_ident, _type, _machine, _version, _entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     *_rest) = _EHDR.unpack_from(data)  # fmt: skip
    names = (
        *("e_type", "e_machine", "e_version", "e_entry", "e_phoff", "e_shoff", "e_flags"),
        *("e_ehsize", "e_phentsize", "e_phnum", "e_shentsize", "e_shnum", "e_shstrndx"),
    )
    offset = 16
    for name, fmt in zip(names, "HHIQQQIHHHHHH", strict=True):
        width = struct.calcsize(fmt)
        fields["elf_header"].append(Field(offset, width, name))
        offset += width
    fields["elf_header"] += [Field(4, 1, "EI_CLASS"), Field(5, 1, "EI_DATA")]
    pointers: list[int] = []
    boundaries = [0, 16, 64, phoff, phoff + phnum * phentsize]
    for i in range(phnum):
        at = phoff + i * phentsize
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align = _PHDR.unpack_from(
            data, at
        )
        for name, off, width in (
            ("p_type", 0, 4),
            ("p_flags", 4, 4),
            ("p_offset", 8, 8),
            ("p_vaddr", 16, 8),
            ("p_filesz", 32, 8),
            ("p_memsz", 40, 8),
        ):
            fields["program_headers"].append(Field(at + off, width, f"phdr[{i}].{name}"))
        boundaries += [p_offset, p_offset + p_filesz // 2, p_offset + p_filesz]
        if p_type == PT_LOAD:
            pointers.append(p_vaddr)
            pointers.append(p_vaddr + p_filesz // 2 // 8 * 8)
        if p_type == PT_NOTE:
            fields["notes"] += _note_fields(data, p_offset, p_filesz)
    for start, size in touched or []:
        for off in range(start, start + size, 8 if size >= 8 else size):
            fields["memory"].append(Field(off, min(8, size), "read by the analysis"))
    boundaries = sorted({b for b in boundaries if 0 <= b < len(data)})
    return Shape(path, data, fields, pointers, boundaries)


def _note_fields(data: bytes, start: int, size: int) -> list[Field]:
    out = []
    pos, end = start, start + size
    while pos + 12 <= end:
        namesz, descsz, kind = struct.unpack_from("<III", data, pos)
        out += [
            Field(pos, 4, f"note {kind:#x} namesz"),
            Field(pos + 4, 4, f"note {kind:#x} descsz"),
            Field(pos + 8, 4, f"note {kind:#x} type"),
        ]
        desc = pos + 12 + (namesz + 3) // 4 * 4
        for off in range(desc, min(desc + descsz, end), max(8, descsz // 64 // 8 * 8)):
            out.append(Field(off, 8 if off + 8 <= end else 1, f"note {kind:#x} content"))
        pos = desc + (descsz + 3) // 4 * 4
    return out


def touched_ranges(path: Path, **options) -> list[tuple[int, int]]:
    """The (file offset, size) ranges of the core that a clean analysis (locals and native
    frames included) reads as process memory, merged; recorded by wrapping the memory reader
    for that one run."""
    from triage.coredump import memory as memory_module
    from triage.engine import analyze_core

    reads: list[tuple[int, int]] = []
    original = memory_module.CoreMemory.read

    def recording(self, address: int, size: int, *args, **kwargs):
        seg = self.segment_at(address)
        if seg is not None and size > 0 and address + size <= seg.vaddr + seg.filesz:
            reads.append((seg.offset + address - seg.vaddr, min(size, 64)))
        return original(self, address, size, *args, **kwargs)

    memory_module.CoreMemory.read = recording  # type: ignore[method-assign]
    try:
        analyze_core(str(path), locals=True, native=True, **options)
    finally:
        memory_module.CoreMemory.read = original  # type: ignore[method-assign]
    merged: list[tuple[int, int]] = []
    for start, size in sorted(set(reads)):
        if merged and start <= merged[-1][0] + merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], start + size - last[0]))
        else:
            merged.append((start, size))
    return merged


def value_bytes(value: int, width: int) -> bytes:
    return (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")


def mutations(shape: Shape, kind: str):
    """A hypothesis strategy of mutations of `shape` in class `kind`: one to three patches of
    its fields (an interesting value, a nearby value, a pointer elsewhere, or anything), or,
    for truncation (and half of the compressed class), a cut."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw) -> Mutation:
        if kind == "truncation" or (kind == "compressed" and draw(st.booleans())):
            cut = draw(
                st.one_of(
                    st.sampled_from(shape.boundaries),
                    st.integers(0, len(shape.data) - 1),
                )
            )
            return Mutation(kind, truncate=cut)
        patches = []
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from(shape.fields[kind]))
            old = int.from_bytes(shape.data[field.offset : field.offset + field.size], "little")
            choices = [
                st.sampled_from(INTERESTING),
                st.integers(-64, 64).map(lambda d, old=old: old + d),
                st.integers(0, (1 << (8 * field.size)) - 1),
            ]
            if shape.pointers and field.size == 8:
                choices.append(
                    st.sampled_from(shape.pointers).flatmap(
                        lambda p: st.integers(-256, 256).map(lambda d, p=p: p + d)
                    )
                )
            value = draw(st.one_of(*choices))
            patches.append((field.offset, value_bytes(value, field.size)))
        return Mutation(kind, tuple(patches))

    return build()


@contextlib.contextmanager
def applied(path: Path, original: bytes, mutation: Mutation) -> Iterator[None]:
    """The file at `path` (a copy of `original`) mutated for the duration of the block."""
    with open(path, "r+b") as f:
        for off, data in mutation.patches:
            if off + len(data) <= len(original):
                f.seek(off)
                f.write(data)
        if mutation.truncate is not None:
            f.truncate(mutation.truncate)
    try:
        yield
    finally:
        with open(path, "r+b") as f:
            if mutation.truncate is not None:
                f.seek(mutation.truncate)
                f.write(original[mutation.truncate :])
            for off, data in mutation.patches:
                f.seek(off)
                f.write(original[off : off + len(data)])


class Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise Hang(f"the analysis took more than {TIME_LIMIT:.0f} s")


@dataclasses.dataclass
class Outcome:
    """What one mutant gave: "ok", the error kind the report names, or a failure (a string
    saying what went wrong, for the properties that do not hold)."""

    status: str
    failure: str | None = None


def check(path: Path, scratch: Path, **options) -> Outcome:
    """Analyse the (mutated) core at `path` as `triage core --locals --native --format json`
    and as text would (`options`: more of analyze_core's, such as lib_search_root), and
    check every property; `scratch` is the TMPDIR in force, which must be empty afterwards."""
    import traceback

    from triage.engine import analyze_core
    from triage.render import NativeView, render_text
    from triage.report import to_json

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        report = analyze_core(str(path), locals=True, native=True, **options)
        text = to_json(report)
        text.encode("utf-8")  # strict: no lone surrogates
        parsed = json.loads(text)
        render_text(report, color=False, native=NativeView(shown=True)).encode("utf-8")
    except Hang as exc:
        return Outcome("hang", str(exc))
    except Exception:
        return Outcome("exception", traceback.format_exc(limit=-8))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    left = sorted(os.listdir(scratch))
    if left:
        for name in left:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch / name) if (scratch / name).is_dir() else (
                    scratch / name
                ).unlink()
        return Outcome("leftover", f"files left in TMPDIR: {left}")
    error = parsed.get("error")
    return Outcome(error["kind"] if error else "ok")


@contextlib.contextmanager
def private_tmpdir() -> Iterator[Path]:
    """A fresh TMPDIR for the analyses (so that leftovers show), restored afterwards."""
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    where = Path(tempfile.mkdtemp(prefix="triage-fuzz-tmp-"))
    os.environ["TMPDIR"] = str(where)
    tempfile.tempdir = str(where)
    try:
        yield where
    finally:
        if saved[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
        shutil.rmtree(where, ignore_errors=True)


def working_copy(base: Path, where: Path) -> Path:
    """A copy of `base` to mutate, in RAM (/dev/shm) when there is room, else in `where`."""
    shm = Path("/dev/shm")
    target_dir = where
    if shm.is_dir():
        free = shutil.disk_usage(shm).free
        if free > 4 * base.stat().st_size:
            target_dir = Path(tempfile.mkdtemp(prefix="triage-fuzz-", dir=shm))
    copy = target_dir / base.name
    shutil.copyfile(base, copy)
    return copy
