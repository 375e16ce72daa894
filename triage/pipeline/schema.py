"""The Arrow schema of the sweep dataset, derived from the report dataclasses.

Nothing here is written by hand: `arrow_schema()` walks the type hints of `SweepRecord` and
the dataclasses it contains, so a field added to `triage/report.py` appears in the dataset
(and in `schemas/`, after `python scripts/export_schemas.py`) without touching this file.

    hint                  Arrow
    str                   string
    int                   int64 (Annotated[int, "arrow:uint64"] -> uint64, any "arrow:NAME")
    float                 float64
    bool                  bool
    Literal["a", "b"]     string
    X | None              X, nullable (every other field is NOT NULL)
    list[X]               list<item: X not null>
    dict[str, str]        map<string, string not null>
    a dataclass           struct of its fields, in declaration order

Each field carries its attribute docstring as the Arrow field metadata `description` (taken
from pydantic's JSON Schema of SweepRecord). The partition keys `fleet` and `sweep_date` are
ordinary columns of the row.

pyarrow and pydantic are imported on first use, so importing this module costs nothing.

The read side (`triage groups`, `ci`, `dashboard`) names the columns it reads with
`column("report.signature.id")`, which checks the path against this schema: a renamed field
fails where the path is written, not as a NULL in SQL.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from triage.report import SweepRecord, adapter, to_plain

if TYPE_CHECKING:
    import pyarrow as pa
    from pydantic import TypeAdapter

#: The hive partition keys, in directory order: fleet=NAME/sweep_date=YYYY-MM-DD/.
PARTITION_COLUMNS = ("fleet", "sweep_date")

#: Prefix of an `Annotated[...]` string that names the Arrow type of a field ("arrow:uint64").
ARROW_TYPE_PREFIX = "arrow:"

_NONE = type(None)

_Model = TypeVar("_Model")


def sweep_adapter() -> TypeAdapter[SweepRecord]:
    """pydantic's validator and serialiser of SweepRecord (built once, on first use)."""
    return adapter(SweepRecord)


def sweep_json_schema() -> dict[str, Any]:
    """The JSON Schema of SweepRecord (field docstrings as descriptions)."""
    return sweep_adapter().json_schema()


def record_to_dict(record: SweepRecord) -> dict[str, Any]:
    """A SweepRecord as plain JSON-compatible Python: the dataset row (equal to pydantic's
    `dump_python(mode="json")`, without pydantic; a test holds them equal)."""
    return to_plain(record)


@functools.cache
def _descriptions() -> dict[str, dict[str, str]]:
    """Class name -> field name -> description, from the JSON Schema of SweepRecord."""
    schema = sweep_json_schema()
    definitions = [schema, *schema.get("$defs", {}).values()]
    return {
        definition["title"]: {
            name: prop["description"]
            for name, prop in definition.get("properties", {}).items()
            if "description" in prop
        }
        for definition in definitions
        if "title" in definition
    }


def _arrow_type(hint: Any, where: str, described: bool) -> tuple[pa.DataType, bool]:
    """The Arrow type of one type hint and whether it is nullable."""
    import pyarrow as pa

    origin = get_origin(hint)
    if origin is typing.Annotated:
        inner, *extras = get_args(hint)
        named = [e for e in extras if isinstance(e, str) and e.startswith(ARROW_TYPE_PREFIX)]
        arrow_type, nullable = _arrow_type(inner, where, described)
        if named:
            factory = getattr(pa, named[-1][len(ARROW_TYPE_PREFIX) :], None)
            arrow_type = factory() if callable(factory) else None
            if not isinstance(arrow_type, pa.DataType):
                raise TypeError(f"{where}: {named[-1]!r} names no Arrow type")
        return arrow_type, nullable
    if origin is Union or origin is types.UnionType:
        members = [arg for arg in get_args(hint) if arg is not _NONE]
        if len(members) != 1:
            raise TypeError(f"{where}: a union other than `X | None` has no Arrow type: {hint}")
        return _arrow_type(members[0], where, described)[0], True
    if origin is Literal:
        values = get_args(hint)
        if not all(isinstance(value, str) for value in values):
            raise TypeError(f"{where}: only Literal[...] of str is supported: {hint}")
        return pa.string(), False
    if origin is list:
        (item,) = get_args(hint)
        item_type, item_nullable = _arrow_type(item, f"{where}[]", described)
        return pa.list_(pa.field("item", item_type, nullable=item_nullable)), False
    if origin is dict:
        key, value = get_args(hint)
        if key is not str:
            raise TypeError(f"{where}: map keys must be str: {hint}")
        value_type, value_nullable = _arrow_type(value, f"{where}{{}}", described)
        return pa.map_(pa.string(), pa.field("value", value_type, nullable=value_nullable)), False
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return pa.struct(arrow_fields(hint, described=described)), False
    scalar = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    if hint in scalar:
        return scalar[hint], False
    raise TypeError(f"{where}: no Arrow type for {hint!r}")


def arrow_fields(cls: type, *, described: bool = True) -> list[pa.Field]:
    """The Arrow fields of a dataclass, in declaration order, with their docstrings (without
    them when not `described`: the same types, without asking pydantic for its JSON Schema)."""
    import pyarrow as pa

    hints = get_type_hints(cls, include_extras=True)
    docs = _descriptions().get(cls.__name__, {}) if described else {}
    fields = []
    for item in dataclasses.fields(cls):
        where = f"{cls.__name__}.{item.name}"
        arrow_type, nullable = _arrow_type(hints[item.name], where, described)
        doc = docs.get(item.name)
        metadata = {"description": doc} if doc else None
        fields.append(pa.field(item.name, arrow_type, nullable=nullable, metadata=metadata))
    return fields


@functools.cache
def arrow_schema() -> pa.Schema:
    """The Arrow schema of one SweepRecord row (partition columns included)."""
    import pyarrow as pa

    return pa.schema(arrow_fields(SweepRecord))


def partition_schema() -> pa.Schema:
    """The hive partition keys as an Arrow schema (both strings)."""
    import pyarrow as pa

    schema = arrow_schema()
    return pa.schema([schema.field(name) for name in PARTITION_COLUMNS])


def to_arrow(records: list[SweepRecord]) -> pa.Table:
    """The records as a Table of `arrow_schema()`, nested lists and structs kept as they are."""
    return rows_to_arrow([record_to_dict(r) for r in records])


def rows_to_arrow(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (SweepRecords as plain data, `record_to_dict`) as a Table of `arrow_schema()`."""
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=arrow_schema())


def _child_type(parent: pa.Schema | pa.StructType, name: str) -> pa.DataType | None:
    """The type of field `name` of a schema or struct (None if it has no such field)."""
    index = parent.get_field_index(name)
    return parent.field(index).type if index >= 0 else None


def _plain(value: Any, arrow_type: pa.DataType | None, *, known_only: bool = False) -> Any:
    """A value from `to_pylist()` (or DuckDB) with maps turned back into dicts (pyarrow gives
    pairs). `known_only`: struct fields the type does not declare are left out, and so are
    NULLs of fields it declares NOT NULL, so that the model's default applies (a field newer
    than the file, read with union_by_name, comes back NULL)."""
    import pyarrow as pa

    if value is None or arrow_type is None:
        return value
    if pa.types.is_map(arrow_type):
        pairs = value.items() if isinstance(value, dict) else value
        item_type = arrow_type.item_type
        return {key: _plain(item, item_type, known_only=known_only) for key, item in pairs}
    if pa.types.is_struct(arrow_type):
        if not known_only:
            return {
                name: _plain(item, _child_type(arrow_type, name)) for name, item in value.items()
            }
        return {
            field.name: _plain(value[field.name], field.type, known_only=True)
            for field in arrow_type
            if field.name in value and (value[field.name] is not None or field.nullable)
        }
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        item_type = arrow_type.value_type
        return [_plain(item, item_type, known_only=known_only) for item in value]
    return value


def from_arrow_row(row: dict[str, Any]) -> SweepRecord:
    """One row of `Table.to_pylist()` (or of a dataset scan) back into a validated SweepRecord.

    Unknown columns and wrong types are refused by pydantic (the models forbid extra fields).
    """
    schema = arrow_schema()
    plain = {name: _plain(value, _child_type(schema, name)) for name, value in row.items()}
    return sweep_adapter().validate_python(plain)


def from_stored(value: dict[str, Any], model: type[_Model]) -> _Model:
    """A struct read back from the dataset (as DuckDB or pyarrow gives it) as the report model
    `model` (CoreReport, FrameReport, ...), validated. Unlike `from_arrow_row` it reads what
    another version of triage wrote: fields this version does not know are left out, fields
    the file predates take their defaults."""
    import pyarrow as pa

    plain = _plain(value, pa.struct(arrow_fields(model, described=False)), known_only=True)
    # mypy takes a type[T] for unhashable, so not an lru_cache key (python/mypy#20409)
    return adapter(model).validate_python(plain)  # type: ignore[arg-type]


# -- the read side: column paths -----------------------------------------------------------


class UnknownColumn(ValueError):
    """A column path that names no column of the dataset row (`column()`)."""


@functools.cache
def _row_type() -> pa.StructType:
    """The dataset row as one Arrow struct (the schema of `arrow_schema()`, without its
    descriptions, so that checking a path does not ask pydantic for its JSON Schema)."""
    import pyarrow as pa

    return pa.struct(arrow_fields(SweepRecord, described=False))


@functools.lru_cache(maxsize=256)
def column(path: str) -> str:
    """The SQL of the column at the dotted `path` of the dataset row: `column("collection.host")`
    is `"collection"."host"`. Every part must name a field of the Arrow schema derived from
    the report models, each but the last a struct; UnknownColumn says which part does not
    (a path cannot go into a list or a map: their items are not columns)."""
    import pyarrow as pa

    parts = path.split(".")
    parent: pa.DataType = _row_type()
    for depth, name in enumerate(parts):
        where = ".".join(parts[:depth]) or "the dataset row"
        if not pa.types.is_struct(parent):
            kind = "list" if pa.types.is_list(parent) else str(parent).split("<", 1)[0]
            raise UnknownColumn(f"{path}: {where} is a {kind}, not a struct of columns")
        child = _child_type(parent, name)
        if child is None:
            known = ", ".join(field.name for field in parent)
            raise UnknownColumn(f"{path}: {where} has no field {name!r} (its fields: {known})")
        parent = child
    return ".".join('"' + name + '"' for name in parts)
