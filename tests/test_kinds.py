"""The catalogue of error kinds and sweep statuses (triage/kinds.py) is the code's: every kind
the package emits is in it and in docs/errors.md, and neither lists a kind nothing emits.

Kinds are collected from the source with `ast`: the kind argument of each error or outcome
made (CoreFileError("not_elf", ...), SourceError(message, "unreachable"), Outcome("timeout",
...), ErrorInfo(kind=...), lost_record(..., status, ...)), a `kind = "..."` in the body of an
error class, a `"status": ...` of a dict; where the argument is a variable, the strings
assigned to it in the same function.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from triage import kinds

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "triage"

#: Callables that take a kind: name -> (index of the positional argument, keyword).
MAKERS = {
    "CoreFileError": (0, "kind"),
    "ExecutableError": (0, "kind"),
    "PythonNotFound": (0, "kind"),
    "SourceError": (1, "kind"),
    "Outcome": (0, "status"),
    "ErrorInfo": (None, "kind"),
    "lost_record": (3, "status"),
}


def _strings(node: ast.AST | None, names: dict[str, set[str]]) -> set[str]:
    """The strings an expression can be: constants, both branches of `a if c else b`, what a
    local variable was assigned."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, names) | _strings(node.orelse, names)
    if isinstance(node, ast.Name):
        return names.get(node.id, set())
    return set()


def _assigned(scope: ast.AST) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, set()).update(_strings(node.value, {}))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            # `kind: ErrorKind = "..."`, as mypy has the kinds' variables declared
            names.setdefault(node.target.id, set()).update(_strings(node.value, {}))
    return names


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def emitted_kinds(path: Path) -> dict[str, set[str]]:
    """kind -> the places (file:line) that emit it, in one module."""
    tree = ast.parse(path.read_text(), str(path))
    found: dict[str, set[str]] = {}

    def add(values: set[str], node: ast.AST) -> None:
        for value in values:
            found.setdefault(value, set()).add(f"{path.relative_to(ROOT)}:{node.lineno}")

    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Module))]
    for scope in scopes:
        names = _assigned(scope) if isinstance(scope, ast.FunctionDef) else {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Call) and _called(node.func) in MAKERS:
                index, keyword = MAKERS[_called(node.func)]  # type: ignore[index]
                if index is not None and len(node.args) > index:
                    add(_strings(node.args[index], names), node)
                for kw in node.keywords:
                    if kw.arg == keyword:
                        add(_strings(kw.value, names), node)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "status":
                        add(_strings(value, names), node)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if not any(_called(base) and _called(base).endswith("Error") for base in cls.bases):  # type: ignore[union-attr]
            continue
        for node in cls.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if any(isinstance(t, ast.Name) and t.id == "kind" for t in targets):
                add(_strings(value, {}), node)
    return found


def all_emitted() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for kind, places in emitted_kinds(path).items():
            found.setdefault(kind, set()).update(places)
    return found


def documented() -> set[str]:
    """The kinds docs/errors.md's tables list (the first column of each row)."""
    text = (ROOT / "docs" / "errors.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE))


def test_the_collector_sees_the_known_makers() -> None:
    """The collector finds kinds made each way the code makes them (so an empty result does
    not pass for a clean one)."""
    found = all_emitted()
    for kind in ("not_elf", "wrong_executable", "not_python", "unreachable", "timeout"):
        assert kind in found, kind
    for kind in ("worker_lost", "task_error", "memory_limit", "ok", "unmapped_address"):
        assert kind in found, kind


def test_every_emitted_kind_is_in_the_catalogue() -> None:
    found = all_emitted()
    unknown = {kind: sorted(places) for kind, places in found.items()}
    unknown = {k: v for k, v in unknown.items() if k not in kinds.SWEEP_STATUSES}
    assert unknown == {}, "add these to triage/kinds.py and docs/errors.md"


def test_the_catalogue_lists_only_emitted_kinds() -> None:
    assert set(kinds.SWEEP_STATUSES) - set(all_emitted()) == set()


def test_every_kind_is_documented_and_only_those() -> None:
    assert documented() == set(kinds.ERROR_KINDS)


def test_core_kinds_and_sweep_kinds_do_not_overlap() -> None:
    from typing import get_args

    core = set(get_args(kinds.CoreErrorKind))
    sweep = set(get_args(kinds.SweepErrorKind))
    assert core & sweep == set()
    assert core | sweep == set(kinds.ERROR_KINDS)
    assert kinds.ERROR_KINDS | {"ok"} == kinds.SWEEP_STATUSES


def test_the_report_model_uses_the_catalogue() -> None:
    """ErrorInfo.kind is typed by the catalogue, so its JSON Schema enumerates it."""
    from triage.report import adapter

    schema = adapter().json_schema()
    kind = schema["$defs"]["ErrorInfo"]["properties"]["kind"]
    assert set(kind["enum"]) == set(kinds.ERROR_KINDS)


def test_a_new_kind_is_caught(tmp_path: Path, monkeypatch) -> None:
    """A module that makes an error of a kind the catalogue lacks is found, however it is
    made."""
    module = tmp_path / "new.py"
    module.write_text(
        "def f(x):\n"
        "    kind = 'made_up' if x else 'not_elf'\n"
        "    raise CoreFileError(kind, 'message')\n"
        "class OddError(TriageError):\n"
        "    kind = 'odd_class_kind'\n"
        "def g():\n"
        "    return {'status': 'odd_status'}\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)  # places relative to it
    assert set(emitted_kinds(module)) == {"made_up", "not_elf", "odd_class_kind", "odd_status"}
