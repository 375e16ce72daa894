"""Caches that outlive one analysis are bounded: a sweep's analysis child reads thousands of
cores, of many builds, in one process."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "triage"


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    return ast.unparse(target)


def _takes_arguments(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    a = node.args
    return bool(a.posonlyargs or a.args or a.kwonlyargs or a.vararg or a.kwarg)


def test_every_memoised_function_has_a_bound():
    """`functools.cache` only on functions without arguments (one value, computed once);
    `lru_cache` never with maxsize=None."""
    unbounded = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                name = _decorator_name(deco)
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
                if name in ("cache", "functools.cache") and _takes_arguments(node):
                    unbounded.append(where)
                if name.endswith("lru_cache") and isinstance(deco, ast.Call):
                    bound = {k.arg: k.value for k in deco.keywords}.get("maxsize")
                    if bound is None and deco.args:
                        bound = deco.args[0]
                    if isinstance(bound, ast.Constant) and bound.value is None:
                        unbounded.append(where)
    assert unbounded == []


def test_module_level_caches_are_bounded_containers():
    """A module-level cache is a `_Bounded` (LRU by count and bytes), never a plain dict
    that grows with every build seen."""
    from triage.native import unwind

    plain = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if any("cache" in n.lower() for n in names) and isinstance(node.value, ast.Dict):
                    plain.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert plain == []
    assert unwind._CFI_CACHE.limit == 64
    assert unwind._DWARF_CACHE.limit == 64 and unwind._DWARF_CACHE.budget == 256 << 20
