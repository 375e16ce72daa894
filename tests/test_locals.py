"""`triage core --locals`: the arguments and local variables of every Python frame, on every
interpreter found, from real cores of tests/programs/locals_target.py (a closure `inner`
called by `outer`, asleep, with locals of every kind the report shows)."""

from __future__ import annotations

import re
import reprlib

import corefactory
import pytest
from corefactory import CoreUnavailable, Interpreter

ADDRESS = re.compile(r" at 0x[0-9a-f]+>$")
_REPRLIB = reprlib.Repr()
_REPRLIB.maxstring = 120

# (name, kind, value) as triage shows them, the same on 2.7 and 3.x; " at 0x...>" stands for
# an object's address.
OUTER = [
    ("count", "argument", "3"),
    ("ratio", "argument", "0.25"),
    ("rest", "argument", "('extra',)"),
    ("options", "argument", "{'key': 'value'}"),
    ("nothing", "local", "None"),
    ("flag", "local", "True"),
    ("big", "local", str(2**70)),
    ("huge", "local", "<int of 1661 bits>"),
    ("negative", "local", "-12345"),
    ("text", "local", "'h\u00e9llo w\u00f6rld'"),
    ("numbers", "local", "[1, 2, 3]"),
    ("pair", "local", "(4,)"),
    ("many", "local", "(0, 1, 2, 3, 4, ... (8 items))"),
    ("table", "local", "{1: 'one', 2: None}"),
    ("point", "local", "<Point object at 0x...>"),
    # Any length, cut in the middle as reprlib cuts it.
    ("long_text", "local", _REPRLIB.repr("x" * 200)),
    ("nested", "local", "[1, 2, 3, [1, 2, [1]]]"),
    ("deep", "local", "[[[[[...]]]]]"),
    ("raw", "local", "RAW"),  # b'\xff' on 3.x, '\xff' on 2.7 (a byte string, not text)
    ("broken", "local", "(4, <invalid object at 0xbad>, 6)"),
    ("inner", "local", "<function object at 0x...>"),
    ("shared", "cell", "7"),
]
INNER = [("step", "argument", "1"), ("here", "local", "8"), ("shared", "free", "7")]


@pytest.fixture(scope="module")
def locals_cores(tmp_path_factory: pytest.TempPathFactory):
    made: dict[str, object] = {}

    def core(interp: Interpreter) -> str:
        if interp.id not in made:
            try:
                directory = tmp_path_factory.mktemp(f"locals-{interp.id}")
                made[interp.id] = str(
                    corefactory.gcore_program(interp, directory, "locals_target.py")
                )
            except CoreUnavailable as exc:
                made[interp.id] = exc
        found = made[interp.id]
        if isinstance(found, CoreUnavailable):
            pytest.skip(str(found))
        return str(found)

    return core


def _shown(variables: list[dict]) -> list[tuple[str, str, str]]:
    return [(v["name"], v["kind"], ADDRESS.sub(" at 0x...>", v["value"])) for v in variables]


def test_locals_of_every_frame(interpreter: Interpreter, locals_cores, triage_json) -> None:
    report = triage_json(locals_cores(interpreter), "--locals")
    (thread,) = report["threads"]
    frames = {f["function"]: f for f in thread["frames"]}
    raw = "'\\xff'" if interpreter.version[0] == 2 else "b'\\xff'"
    expected = [(n, k, raw if v == "RAW" else v) for n, k, v in OUTER]
    assert _shown(frames["outer"]["locals"]) == expected
    assert _shown(frames["inner"]["locals"]) == INNER
    assert frames["<module>"]["locals"] == []  # module code keeps its names in a dict


def test_without_the_flag_no_locals_are_read(
    preferred_interp: Interpreter, locals_cores, triage_json
) -> None:
    report = triage_json(locals_cores(preferred_interp))
    assert {f["locals"] is None for t in report["threads"] for f in t["frames"]} == {True}


def test_text_shows_arguments_then_locals(
    preferred_interp: Interpreter, locals_cores, run_triage
) -> None:
    rc, out, err = run_triage("core", locals_cores(preferred_interp), "--locals", "--no-color")
    assert rc == 0, err
    lines = out.splitlines()
    newest = re.compile(r" in (outer\.<locals>\.)?inner$")
    at = next(i for i, line in enumerate(lines) if newest.search(line))
    assert lines[at + 1 : at + 7] == [
        "        time.sleep(1000)",
        "      Arguments:",
        "        step: 1",
        "      Locals:",
        "        here: 8",
        "        shared: 7",
    ]
    assert lines[at + 7 :] == []  # the newest frame: nothing after it
