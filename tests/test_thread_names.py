"""Python-level thread names read out of real cores, and the dict/int/attribute readers behind them.

Each core is the on-demand (gcore) core of tests/programs/target.py with 2 worker threads, made
once per session per interpreter. The program names its threads ``worker-0``, ``worker-1`` and
reports every native thread id, main thread first, so the expected name of each thread is known.

The reader tests run ``analyze_core`` in this process with a hook in place of ``thread_names``
that, while the core is open, reads objects whose values are known for every interpreter
(``sys.maxsize``, ``sys.float_info``, ``sre_constants.MAXREPEAT``...). Between them they take
every storage of instance attributes there is in 2.7-3.13: ``tp_dictoffset`` (positive, and
negative for int subclasses), 3.6-3.10 split tables, 3.11/3.12 managed dicts both as values and
as materialised dicts, and 3.13 inline values and materialised dicts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import sysroot
from corefactory import CoreCase, Interpreter

import triage.cpython.interpreter as interpreter_module
from triage.cpython.containers import (
    dict_get_str,
    dict_items,
    instance_attribute,
    int_value,
)
from triage.cpython.thread_names import sys_modules, thread_names
from triage.engine import analyze_core

WORKER_NAMES = ["worker-0", "worker-1"]


def expected_names(case: CoreCase) -> dict[int, str]:
    """Native thread id -> the name the program gave that thread."""
    names = ["MainThread"] + [f"worker-{i}" for i in range(case.threads)]
    assert len(case.tids) == len(names)
    return dict(zip(case.tids, names, strict=True))


# --------------------------------------------------------------------------------------------
# End to end: `triage core`


def test_json_names(gcore_case: CoreCase, triage_json) -> None:
    report = triage_json(gcore_case.path)
    names = {thread["tid"]: thread["name"] for thread in report["threads"]}
    assert names == expected_names(gcore_case)


def test_text_header(gcore_case: CoreCase, run_triage) -> None:
    rc, out, err = run_triage("core", gcore_case.path)
    assert rc == 0, err
    headers = re.findall(
        r"^Traceback for thread (\d+) \((.*?)\) \[[^\]]*\] \(most recent call last\):$", out, re.M
    )
    assert {int(tid): name for tid, name in headers} == expected_names(gcore_case)


# --------------------------------------------------------------------------------------------
# The readers, inside one analysis


class ProbeError:
    """What a probe raised (kept so that the test, not the engine, reports it)."""

    def __init__(self, exc: BaseException) -> None:
        self.text = f"{type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return f"<probe failed: {self.text}>"


def _probe(interp, istate: int) -> dict[str, Any]:
    objects, memory, layout = interp.objects, interp.memory, interp.layout
    py3 = layout.version[0] == 3
    facts: dict[str, Any] = {}

    def fact(name: str, read: Callable[[], Any]) -> None:
        try:
            facts[name] = read()
        except Exception as exc:  # reported by the test that looks at the fact
            facts[name] = ProbeError(exc)

    modules = sys_modules(interp, istate)

    def module_dict(name: str) -> int:
        module = dict_get_str(objects, modules, name)
        assert module, f"{name} not in sys.modules"
        return memory.u64(module + layout.offset("PyModuleObject", "md_dict"))

    def attr(d: int, name: str) -> int:
        value = dict_get_str(objects, d, name)
        assert value, f"no {name}"
        return value

    fact("modules", lambda: {objects.text(k): v for k, v in dict_items(objects, modules)})
    fact("modules_used", lambda: memory.i64(modules + layout.offset("PyDictObject", "ma_used")))
    fact("missing", lambda: dict_get_str(objects, modules, "no such module, surely"))
    fact("maxsize", lambda: int_value(objects, attr(module_dict("sys"), "maxsize")))
    fact("seek_set", lambda: int_value(objects, attr(module_dict("os"), "SEEK_SET")))

    def tuple_ints(tup: int, indices: list[int]) -> list[int]:
        items = objects.tuple_items(tup)
        assert 0 < len(items) < 64
        return [int_value(objects, items[i]) for i in indices if i < len(items)]

    # sys.float_info is a struct sequence (a tuple): max_exp is item 1, min_exp item 4.
    fact("float_info", lambda: tuple_ints(attr(module_dict("sys"), "float_info"), [1, 4]))

    def sre_constants() -> int:
        for name in ("re._constants", "sre_constants"):
            if dict_get_str(objects, modules, name):
                return module_dict(name)
        raise AssertionError("neither re._constants nor sre_constants imported")

    fact("maxrepeat", lambda: int_value(objects, attr(sre_constants(), "MAXREPEAT")))
    if py3:
        # An int subclass: a negative tp_dictoffset up to 3.11, a managed dict from 3.12.
        fact(
            "maxrepeat_name",
            lambda: objects.text(
                instance_attribute(objects, attr(sre_constants(), "MAXREPEAT"), "name")
            ),
        )
        # A C type with a positive tp_dictoffset (io.TextIOWrapper).
        fact(
            "stdout_mode",
            lambda: objects.text(
                instance_attribute(objects, attr(module_dict("sys"), "stdout"), "mode")
            ),
        )
        # Managed values (3.11+) or a split table (3.6-3.10).
        fact(
            "spec_name",
            lambda: objects.text(
                instance_attribute(objects, attr(module_dict("threading"), "__spec__"), "name")
            ),
        )
        fact(
            "no_such_attribute",
            lambda: instance_attribute(
                objects, attr(module_dict("threading"), "__spec__"), "no_such_attribute"
            ),
        )
    if layout.version >= (3, 11):
        # Enum members whose __dict__ enum itself materialised: the dict, not the values.
        fact(
            "enum_name",
            lambda: objects.text(
                instance_attribute(objects, attr(module_dict("enum"), "EJECT"), "_name_")
            ),
        )
    fact("names", lambda: thread_names(interp, istate))
    fact("names_bad_state", lambda: thread_names(interp, 8))
    fact("names_shifted_state", lambda: thread_names(interp, istate + 8))
    fact(
        "thread_ids",
        lambda: [memory.u64(ts + interp.t_thread_id) for ts in interp.thread_states(istate)],
    )
    return facts


@pytest.fixture(scope="session")
def probes(cores) -> Callable[[Interpreter], dict[str, Any]]:
    """probes(interp) -> the facts read from that interpreter's gcore core (once per session)."""
    cache: dict[str, dict[str, Any]] = {}

    def run(interp: Interpreter) -> dict[str, Any]:
        if interp.id not in cache:
            case = cores.gcore(interp)
            seen: list[dict[str, Any]] = []
            real = interpreter_module.thread_names

            def hook(interp_obj, istate: int) -> dict[int, str]:
                seen.append(_probe(interp_obj, istate))
                return real(interp_obj, istate)

            with mock.patch.object(interpreter_module, "thread_names", hook):
                report = analyze_core(case.path, **sysroot.options_for(case.path))
            assert report.error is None, report.error
            assert len(seen) == 1, "expected one interpreter in the core"
            cache[interp.id] = seen[0]
        return cache[interp.id]

    return run


@pytest.fixture
def facts(probes, interpreter: Interpreter) -> dict[str, Any]:
    return probes(interpreter)


def value(facts: dict[str, Any], name: str) -> Any:
    assert name in facts, f"{name} was not probed"
    got = facts[name]
    assert not isinstance(got, ProbeError), f"{name}: {got.text}"
    return got


def test_sys_modules(facts: dict[str, Any]) -> None:
    modules = value(facts, "modules")
    assert {"sys", "threading", "__main__", "os", "json"} <= set(modules)
    assert len(modules) == value(facts, "modules_used")
    assert value(facts, "missing") is None


def test_int_values(facts: dict[str, Any]) -> None:
    assert value(facts, "maxsize") == 2**63 - 1
    assert value(facts, "seek_set") == 0
    assert value(facts, "float_info") == [1024, -1021]  # max_exp, min_exp
    assert value(facts, "maxrepeat") == 2**32 - 1  # two 30-bit digits


def test_instance_attributes(facts: dict[str, Any], interpreter: Interpreter) -> None:
    if interpreter.version[0] == 2:
        pytest.skip("the 2.7 objects probed here have no instance dict (names cover 2.7)")
    assert value(facts, "maxrepeat_name") == "MAXREPEAT"
    assert value(facts, "stdout_mode") == "w"
    assert value(facts, "spec_name") == "threading"
    assert value(facts, "no_such_attribute") is None
    if interpreter.version >= (3, 11):
        assert value(facts, "enum_name") == "EJECT"


def test_thread_names_by_ident(facts: dict[str, Any]) -> None:
    names = value(facts, "names")
    assert sorted(names.values()) == ["MainThread", *WORKER_NAMES]
    # Keyed like PyThread.thread_id: every thread state's pthread_t has its name.
    assert set(names) == set(value(facts, "thread_ids"))


def test_thread_names_never_raise(facts: dict[str, Any]) -> None:
    assert value(facts, "names_bad_state") == {}
    assert isinstance(value(facts, "names_shifted_state"), dict)
