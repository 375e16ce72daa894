"""Differential tests of triage.cpython.linetable against the real interpreters.

Each interpreter found compiles the same sources and reports, for every code object, its raw
line table and its own answer for every instruction offset; the decoders must agree exactly.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from triage.cpython.linetable import (
    Position,
    line_from_linetable_310,
    line_from_lnotab,
    position_from_locations,
)

PYENV_VERSIONS = [
    "2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18",
    "3.10.13", "3.11.7", "3.12.1", "3.13.0",
]  # fmt: skip


def _interpreters() -> list[tuple[str, str]]:
    """(test id, path) for each interpreter to check, found or not."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [(f"py{v}", str(root / v / "bin" / "python")) for v in PYENV_VERSIONS]
    system = sorted(glob.glob("/usr/bin/python3.[0-9]*"))
    system = [p for p in system if p[len("/usr/bin/python") :].replace(".", "").isdigit()]
    found += [(f"sys-{Path(p).name}", p) for p in system or ["/usr/bin/python3"]]
    return found


# Runs under the interpreter being checked: Python 2.7 and 3.x compatible, no f-strings.
HELPER = r"""
import binascii, dis, json, sys

def walk(code, out):
    out.append(code)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            walk(const, out)

def expected(code):
    ver = sys.version_info[:2]
    size = len(code.co_code)
    if ver < (3, 10):
        starts = list(dis.findlinestarts(code))
        step = 1 if ver < (3, 6) else 2
        result = []
        for offset in range(0, size, step):
            line = None
            for start, start_line in starts:
                if start <= offset:
                    line = start_line
            result.append(line)
        return code.co_lnotab, result
    if ver == (3, 10):
        ranges = list(code.co_lines())
        result = []
        for offset in range(0, size, 2):
            line = "uncovered"
            for start, end, range_line in ranges:
                if start <= offset < end:
                    line = range_line
            result.append(line)
        return code.co_linetable, result
    positions = [list(p) for p in code.co_positions()]
    assert len(positions) == size // 2, (len(positions), size)
    return code.co_linetable, positions

def main():
    with open(sys.argv[1]) as f:
        sources = json.load(f)
    out = []
    for source in sources:
        if tuple(sys.version_info[:2]) < tuple(source["min"]):
            continue
        codes = []
        walk(compile(source["src"], source["name"], "exec"), codes)
        for code in codes:
            table, answers = expected(code)
            out.append({
                "source": source["name"],
                "name": code.co_name,
                "firstlineno": code.co_firstlineno,
                "table": binascii.hexlify(table).decode("ascii"),
                "expected": answers,
            })
    sys.stdout.write(json.dumps({"version": list(sys.version_info[:3]), "codes": out}))

main()
"""


def _basic() -> str:
    return """\
import os
import random

def deco(arg):
    def wrap(fn):
        return fn
    return wrap

@deco(1)
@deco(
    2,
)
def outer(a, b=2, *args, **kw):
    total = 0
    for i in range(a):
        if i % 2:
            total += i
        elif i > 10:
            continue
        else:
            total -= (i
                      * 2
                      + b)
    def inner(x):
        return [y * x for y in range(x) if y]
    squares = {k: k * k for k in range(3)}
    gen = (z for z in args if z)
    fn = lambda q: (q +
                    1)
    try:
        total += inner(3)[0]
    except (ValueError, KeyError) as exc:
        total = -1
    except Exception:
        raise
    else:
        total += 1
    finally:
        total += len(squares)
    while total > 100:
        total //= 2
    with open(os.devnull) as fh:
        fh.read()
    return total, gen, fn

class Klass(object):
    attr = [1,
            2]
    def method(self):
        def nested():
            def deeper():
                return self
            return deeper
        return nested

def generator(n):
    for i in range(n):
        yield i
        yield (i,
               n)
"""


def _far() -> str:
    return (
        "x = 1\n"
        + "\n" * 1100
        + """\
def far_away(a):
    b = a + 1
    return [b for _ in range(a)]
"""
        + "\n" * 3000
        + "def farther():\n    return 1\n"
    )


def _jumps() -> str:
    """Line deltas > 127 and < -128 (blank-line gaps), address deltas > 255 on one line."""
    gap = "\n" * 300
    long_line = " + ".join(f"n{i}" for i in range(70))
    return (
        "def call_spans(f, a, b):\n"
        "    f(\n        a,\n" + gap + "        b,\n    )\n"
        "    return f.g(\n        [\n            a,\n" + gap + "            b,\n        ]\n    )\n"
        "\n"
        "def decorated(dec):\n"
        "    @dec\n" + gap + "    def fn():\n"
        "        pass\n"
        "    return fn\n"
        "\n"
        "def loops(n):\n"
        "    while n:\n        n -= 1\n" + gap + "        n -= 2\n"
        "    for i in range(n):\n        n += i\n" + gap + "        n -= i\n"
        "    return n\n"
        "\n"
        "def one_line(n0):\n"
        f"    x = {long_line}\n"
        "    return x\n"
        "\n"
        "def try_far(n):\n"
        "    try:\n        n += 1\n" + gap + "        n += 2\n"
        "    except ValueError:\n        n += 3\n" + gap + "        n += 4\n"
        "    finally:\n        n += 5\n" + gap + "        n += 6\n"
        "    return n\n"
    )


def _columns() -> str:
    """Columns > 127 and > 255, multi-line spans: the 3.11+ long form."""
    pad = "x" * 140
    pad2 = "y" * 300
    return (
        f"def cols({pad}, {pad2}):\n"
        f"    r = ({pad} + 1) * ({pad2} - 2) + {pad}.attr({pad2}) + len({pad})\n"
        f"    s = {pad}[\n"
        f"        {pad2}:\n"
        f"          {pad}]\n"
        f"    t = (1, {pad2}(\n" + "\n" * 150 + f"    ), {pad})\n"
        f"    return r, s, t\n"
    )


def _async() -> str:
    return """\
import asyncio

async def coro(xs):
    async with xs as y:
        async for z in y:
            await asyncio.sleep(z)
    return [w async for w in xs]
"""


def _modern() -> str:
    return """\
def matcher(cmd):
    match cmd:
        case {"go": dest} if (dest :=
                               dest):
            return dest
        case [a, *rest]:
            return a
        case _:
            return None
"""


def _groups() -> str:
    return """\
def groups():
    try:
        raise ExceptionGroup("g", [ValueError(1)])
    except* ValueError as eg:
        print(eg)
    except* TypeError:
        pass
    return 1
"""


SOURCES = [
    {"name": "basic.py", "min": [2, 7], "src": _basic()},
    {"name": "far.py", "min": [2, 7], "src": _far()},
    {"name": "jumps.py", "min": [2, 7], "src": _jumps()},
    {"name": "columns.py", "min": [2, 7], "src": _columns()},
    {"name": "async.py", "min": [3, 7], "src": _async()},
    {"name": "modern.py", "min": [3, 10], "src": _modern()},
    {"name": "groups.py", "min": [3, 11], "src": _groups()},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("linetable")
    (d / "helper.py").write_text(HELPER)
    (d / "sources.json").write_text(json.dumps(SOURCES))
    return d


def _dump(python: str, workdir: Path) -> dict:
    proc = subprocess.run(
        [python, str(workdir / "helper.py"), str(workdir / "sources.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _decode(version: tuple[int, ...], code: dict) -> list:
    """Our answers, in the helper's shape, for every offset the helper reported."""
    table = bytes.fromhex(code["table"])
    first = code["firstlineno"]
    count = len(code["expected"])
    if version < (3, 10):
        step = 1 if version < (3, 6) else 2
        signed = version >= (3, 6)
        return [
            line_from_lnotab(table, first, i * step, signed_deltas=signed) for i in range(count)
        ]
    if version == (3, 10):
        return [line_from_linetable_310(table, first, i) for i in range(count)]
    return [list(position_from_locations(table, first, i)) for i in range(count)]


def _lines(version: tuple[int, ...], code: dict) -> list[int | None]:
    """The interpreter's line per offset (first field of a 3.11+ position)."""
    if version >= (3, 11):
        return [p[0] for p in code["expected"]]
    return [None if line == "uncovered" else line for line in code["expected"]]


def _features(version: tuple[int, ...], codes: list[dict]) -> set[str]:
    """Table features the compiled sources exercised (keeps the corpus honest)."""
    seen: set[str] = set()
    for code in codes:
        table = bytes.fromhex(code["table"])
        lines = [line for line in _lines(version, code) if line is not None]
        for before, after in itertools.pairwise(lines):
            if after - before > 127:
                seen.add("jump>127")
            if after - before < -128:
                seen.add("jump<-128")
        if any(line > 1000 for line in lines):
            seen.add("line>1000")
        if version <= (3, 10):
            for addr, delta in zip(table[0::2], table[1::2], strict=False):
                if addr >= 254:
                    seen.add("addr-run")
                if version == (3, 10) and delta == 0x80:
                    seen.add("no-line")
            continue
        pos = 0
        while pos < len(table):  # each entry starts with a byte having bit 7 set
            seen.add(f"code{(table[pos] >> 3) & 15}")
            pos += 1
            while pos < len(table) and not table[pos] & 0x80:
                pos += 1
        for _line, _end_line, column, end_column in code["expected"]:
            if column is not None and column > 127 and end_column > 255:
                seen.add("wide-column")
    return seen


def _expected_features(version: tuple[int, ...]) -> set[str]:
    want = {"jump>127", "line>1000", "addr-run"}
    if version >= (3, 8):  # 3.6/3.7 only ever emit increasing lines for this corpus
        want.add("jump<-128")
    if version == (3, 10):
        want.add("no-line")
    if version >= (3, 11):
        want = {"jump>127", "jump<-128", "line>1000", "wide-column"}
        want |= {f"code{kind}" for kind in range(16)}
    return want


@pytest.mark.parametrize(("python",), [(p,) for _, p in _interpreters()],
                         ids=[i for i, _ in _interpreters()])  # fmt: skip
def test_matches_interpreter(python: str, workdir: Path) -> None:
    if not os.access(python, os.X_OK):
        pytest.skip(f"interpreter not installed: {python}")
    dump = _dump(python, workdir)
    version = tuple(dump["version"][:2])
    mismatches = []
    offsets = 0
    for code in dump["codes"]:
        ours = _decode(version, code)
        offsets += len(ours)
        for i, (want, got) in enumerate(zip(code["expected"], ours, strict=True)):
            if want != got:
                mismatches.append(f"{code['source']}:{code['name']} unit/offset {i}: "
                                  f"interpreter {want} decoder {got}")  # fmt: skip
    assert not mismatches, f"{len(mismatches)} mismatches, first: " + "\n".join(mismatches[:20])
    assert len(dump["codes"]) > 20 and offsets > 500
    missing = _expected_features(version) - _features(version, dump["codes"])
    assert not missing, f"sources no longer exercise: {sorted(missing)}"


# --- Hand-made tables: documented semantics and damaged input. ---


def test_lnotab_signed_and_unsigned_deltas() -> None:
    table = bytes([0, 5, 4, 0xFE])  # +5 lines at 0, then 0xFE at offset 4
    assert line_from_lnotab(table, 10, 0, signed_deltas=True) == 15
    assert line_from_lnotab(table, 10, 3, signed_deltas=True) == 15
    assert line_from_lnotab(table, 10, 4, signed_deltas=True) == 13
    assert line_from_lnotab(table, 10, 4, signed_deltas=False) == 269
    assert line_from_lnotab(table, 10, -1, signed_deltas=True) == 10  # before the first instr
    assert line_from_lnotab(table + b"\x02", 10, 99, signed_deltas=True) == 13  # odd length


def test_linetable_310_units_and_no_line() -> None:
    table = bytes([4, 1, 2, 0x80, 6, 0x7F, 0, 2])  # bytes 0-3: +1; 4-5: no line; 6-11: +127
    assert [line_from_linetable_310(table, 1, i) for i in range(6)] == [2, 2, None, 129, 129, 129]
    assert line_from_linetable_310(table, 1, -1) == 1  # f_lasti == -1: not started
    assert line_from_linetable_310(table, 1, 50) == 131  # past the end: running line
    assert line_from_linetable_310(b"", 7, 0) == 7


LOCATIONS = (
    b"\x89\x23"  # short form, code 1, 2 units: columns 10-13, same line
    b"\xd8\x05\x09"  # one-line form, line +1, columns 5-9
    b"\xe8\x07"  # no columns, line -3
    b"\xf0\x50\x06\x02\x6d\x04\x00"  # long: line +200, end +2, col 300, no end col
    b"\xfa"  # no location, 3 units
    b"\x80\x00"  # short form, code 0: columns 0-0
)


def test_locations_every_form() -> None:
    got = [position_from_locations(LOCATIONS, 100, i) for i in range(10)]
    assert got == [
        (100, 100, 10, 13),
        (100, 100, 10, 13),
        (101, 101, 5, 9),
        (98, 98, None, None),
        (298, 300, 300, None),
        (None, None, None, None),
        (None, None, None, None),
        (None, None, None, None),
        (298, 298, 0, 0),
        (298, None, None, None),  # past the end: running line only
    ]
    assert position_from_locations(LOCATIONS, 100, -1) == Position(100)


def test_locations_truncated_keeps_complete_entries() -> None:
    full = [position_from_locations(LOCATIONS, 100, i) for i in range(9)]
    for cut in range(len(LOCATIONS)):
        for i in range(9):
            got = position_from_locations(LOCATIONS[:cut], 100, i)
            assert got == full[i] or (got.end_line, got.column, got.end_column) == (None,) * 3


def test_damaged_tables_never_raise() -> None:
    rng = random.Random(1234)
    real = compile(_basic() + _columns(), "x.py", "exec").co_consts
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(40))) for _ in range(150)]
    samples += [bytes([0xF0] + [0x7F] * 500), bytes([0x80]), bytes([0x7F, 0x80])]
    samples += [c.co_linetable for c in real if hasattr(c, "co_linetable")]
    for table in samples:
        damaged = [table[:cut] for cut in range(0, len(table), 3)]
        damaged += [
            table[:i] + bytes([table[i] ^ 0x80]) + table[i + 1 :] for i in range(len(table))
        ]
        for bad in damaged:
            for offset in (-1, 0, 1, 7, 40, 10**6):
                assert isinstance(line_from_lnotab(bad, 5, offset, signed_deltas=True), int)
                assert isinstance(line_from_lnotab(bad, 5, offset, signed_deltas=False), int)
                line = line_from_linetable_310(bad, 5, offset)
                assert line is None or isinstance(line, int)
                pos = position_from_locations(bad, 5, offset)
                assert isinstance(pos, Position)
