"""Dicts, ints and instance attributes of a dead process, for CPython 2.7 and 3.6-3.13.

Every offset and size comes from the layout tables (``layouts/*.json``). The few numbers that
are C macros, and so not in the DWARF the tables are derived from, are named below with the
header that defines them.

    for key, value in dict_items(objects, d): ...
    threading = dict_get_str(objects, sys_modules, "threading")
    ident = int_value(objects, key)
    name = instance_attribute(objects, thread, "_name")

Unreadable memory raises ``AddressError``; an object that is not what the caller asked for (an
int that is not an int, a dict that is not a dict) raises ``UnexpectedObject``; both are
``ReadError``s (triage.errors).
"""

from __future__ import annotations

from collections.abc import Sequence

from triage.cpython.fields import Constant, Field, Offsets, Size
from triage.cpython.objects import ObjectReader
from triage.errors import ReadError, UnexpectedObject

__all__ = [
    "UnexpectedObject",
    "dict_get_str",
    "dict_get_strs",
    "dict_items",
    "instance_attribute",
    "instance_dict_items",
    "int_value",
    "is_dict",
]

# tp_flags bits (Include/object.h; the same bits in 2.7 and every 3.x).
Py_TPFLAGS_INLINE_VALUES = 1 << 2  # 3.13+
Py_TPFLAGS_MANAGED_DICT = 1 << 4  # 3.11+
Py_TPFLAGS_HEAPTYPE = 1 << 9
Py_TPFLAGS_INT_SUBCLASS = 1 << 23  # 2.7 only
Py_TPFLAGS_LONG_SUBCLASS = 1 << 24
Py_TPFLAGS_STRING_SUBCLASS = 1 << 27  # bytes on 3.x, str on 2.7
Py_TPFLAGS_UNICODE_SUBCLASS = 1 << 28
Py_TPFLAGS_DICT_SUBCLASS = 1 << 29

_PTR = 8  # sizeof(PyObject *) on x86-64, the only architecture cores are read for

MAX_DICT_ENTRIES = 100_000
MAX_INT_DIGITS = 1 << 12  # 36 000-bit ints are plenty for what a debugger reads


class DictFields(Offsets, when=lambda m: not m.py2_objects):
    """3.x dicts: a keys object of entries, values in it or in a separate array."""

    ma_keys = Field("PyDictObject", "ma_keys", debug="dict_object.ma_keys")
    ma_values = Field("PyDictObject", "ma_values", debug="dict_object.ma_values")
    dk_nentries = Field("PyDictKeysObject", "dk_nentries")
    dk_indices = Field("PyDictKeysObject", "dk_indices")
    entry_size = Size("PyDictKeyEntry")
    me_key = Field("PyDictKeyEntry", "me_key")
    me_value = Field("PyDictKeyEntry", "me_value")


class SizedKeys(Offsets, when=lambda m: m.dict_keys == "dk_size"):
    """3.6-3.10: the table size itself; index width follows from it."""

    dk_size = Field("PyDictKeysObject", "dk_size")


class Log2Keys(Offsets, when=lambda m: m.dict_keys == "log2"):
    """3.11+: sizes as log2, and unicode-only keys stored without hashes."""

    dk_log2_size = Field("PyDictKeysObject", "dk_log2_size")
    dk_log2_index_bytes = Field("PyDictKeysObject", "dk_log2_index_bytes")
    dk_kind = Field("PyDictKeysObject", "dk_kind")
    general = Constant("DICT_KEYS_GENERAL")
    unicode_size = Size("PyDictUnicodeEntry")
    unicode_key = Field("PyDictUnicodeEntry", "me_key")
    unicode_value = Field("PyDictUnicodeEntry", "me_value")


class Py2Fields(Offsets, when=lambda m: m.py2_objects):
    """2.7: open-addressing dicts, machine ints, old-style instances."""

    ma_mask = Field("PyDictObject", "ma_mask")
    ma_table = Field("PyDictObject", "ma_table")
    entry_size = Size("PyDictEntry")
    me_key = Field("PyDictEntry", "me_key")
    me_value = Field("PyDictEntry", "me_value")
    ob_ival = Field("PyIntObject", "ob_ival")
    in_dict = Field("PyInstanceObject", "in_dict")


class LongFields(Offsets):
    """Arbitrary-precision ints: digits of PyLong_SHIFT bits."""

    digit_size = Constant("sizeof(digit)")
    shift = Constant("PyLong_SHIFT")
    ob_digit = Field("PyLongObject", "long_value.ob_digit", "ob_digit")


class TaggedLongFields(Offsets, when=lambda m: m.ints == "lv_tag"):
    """3.12+: sign and digit count in `long_value.lv_tag` (the header's macros)."""

    lv_tag = Field("PyLongObject", "long_value.lv_tag", debug="long_object.lv_tag")
    sign_mask = Constant("_PyLong_SIGN_MASK")
    non_size_bits = Constant("_PyLong_NON_SIZE_BITS")


class TypeFields(Offsets):
    """Where a type puts an instance's dict."""

    tp_dictoffset = Field("PyTypeObject", "tp_dictoffset")
    tp_basicsize = Field("PyTypeObject", "tp_basicsize")
    tp_itemsize = Field("PyTypeObject", "tp_itemsize")


class ManagedDictFields(Offsets, when=lambda m: m.instance_dicts != "dictoffset"):
    """3.11+ managed dicts: slots before the object's GC header, shared keys on the type."""

    gc_head = Size("PyGC_Head")
    ht_cached_keys = Field("PyHeapTypeObject", "ht_cached_keys")
    values = Field("PyDictValues", "values")


class InlineValuesFields(Offsets, when=lambda m: m.instance_dicts == "inline_values"):
    """3.13+: an instance's values right after it, with a prefix saying how many."""

    capacity = Field("PyDictValues", "capacity")
    valid = Field("PyDictValues", "valid")
    values = Field("PyDictValues", "values")


def _flags(objects: ObjectReader, tp: int) -> int:
    return objects.memory.u64(tp + objects.tp_flags)


def _type_flags(objects: ObjectReader, obj: int) -> int:
    return _flags(objects, objects.type_of(obj))


def is_dict(objects: ObjectReader, obj: int) -> bool:
    """Whether ``obj`` is a dict (or an instance of a dict subclass)."""
    return bool(obj) and bool(_type_flags(objects, obj) & Py_TPFLAGS_DICT_SUBCLASS)


def _words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + _PTR], "little") for i in range(0, len(raw), _PTR)]


# --------------------------------------------------------------------------------------------
# dicts


def dict_items(
    objects: ObjectReader, d: int, limit: int = MAX_DICT_ENTRIES
) -> list[tuple[int, int]]:
    """The (key, value) object addresses of a dict, empty and deleted slots left out.

    Order: the table's entry order, which is insertion order for 3.6+ combined tables and the
    shared-key order for split tables (instance dicts); hash order on 2.7.
    """
    if not is_dict(objects, d):
        raise UnexpectedObject(d, f"not a dict but a {objects.type_name(d)!r}")
    if objects.py2:
        return _items27(objects, d, limit)
    f, mem = objects.fields(DictFields), objects.memory
    keys = mem.u64(d + f.ma_keys)
    values = mem.u64(d + f.ma_values)
    if not keys:
        raise UnexpectedObject(d, "dict without keys")
    if values:
        return _split_items(objects, keys, _values_array(objects, values), None, limit)
    return [(k, v) for k, v in _key_entries(objects, keys, limit) if k and v]


def _items27(objects: ObjectReader, d: int, limit: int) -> list[tuple[int, int]]:
    """2.7: an open-addressing table of ma_mask + 1 PyDictEntry slots; dummies have no value."""
    f, mem = objects.fields(Py2Fields), objects.memory
    mask = mem.i64(d + f.ma_mask)
    table = mem.u64(d + f.ma_table)
    slots = mask + 1
    if slots <= 0 or slots & mask or slots > 4 * limit or not table:
        raise UnexpectedObject(d, f"implausible dict table size {slots}")
    size, k_off, v_off = f.entry_size, f.me_key, f.me_value
    raw = mem.read(table, slots * size)
    out = []
    for base in range(0, len(raw), size):
        key = int.from_bytes(raw[base + k_off : base + k_off + _PTR], "little")
        value = int.from_bytes(raw[base + v_off : base + v_off + _PTR], "little")
        if key and value:
            out.append((key, value))
    return out


def _key_entries(objects: ObjectReader, keys: int, limit: int) -> list[tuple[int, int]]:
    """Every entry of a PyDictKeysObject, in entry order, as (me_key, me_value), NULLs kept
    (so that entry i lines up with values[i] of a split table)."""
    mem = objects.memory
    f = objects.fields(DictFields)
    nentries = mem.i64(keys + f.dk_nentries)
    indices = keys + f.dk_indices
    size, k_off, v_off = f.entry_size, f.me_key, f.me_value
    if objects.model.dict_keys == "log2":  # 3.11+: sizes as log2, entry type by dk_kind
        g = objects.fields(Log2Keys)
        head = mem.read(keys, f.dk_indices)
        log2_size = head[g.dk_log2_size]
        index_bytes = 1 << head[g.dk_log2_index_bytes]
        table_size = 1 << log2_size if log2_size < 63 else 0
        if head[g.dk_kind] != g.general:
            size, k_off, v_off = g.unicode_size, g.unicode_key, g.unicode_value
    else:  # 3.6-3.10: dk_size slots; the index width follows from it (DK_IXSIZE)
        table_size = mem.i64(keys + objects.fields(SizedKeys).dk_size)
        if table_size <= 0xFF:
            width = 1
        elif table_size <= 0xFFFF:
            width = 2
        elif table_size <= 0xFFFFFFFF:
            width = 4
        else:
            width = 8
        index_bytes = table_size * width
    if table_size <= 0 or table_size & (table_size - 1) or not 0 <= nentries <= table_size:
        raise UnexpectedObject(keys, f"implausible dict keys (size {table_size}, {nentries} used)")
    if nentries > limit:
        raise UnexpectedObject(keys, f"dict of {nentries} entries exceeds the limit of {limit}")
    raw = mem.read(indices + index_bytes, nentries * size)
    return [
        (
            int.from_bytes(raw[base + k_off : base + k_off + _PTR], "little"),
            int.from_bytes(raw[base + v_off : base + v_off + _PTR], "little"),
        )
        for base in range(0, len(raw), size)
    ]


def _values_array(objects: ObjectReader, values: int) -> int:
    """Address of the first value of a split table's values (``ma_values`` or the object's own
    values): a bare ``PyObject *[]`` up to 3.10, ``PyDictValues.values`` from 3.11 (after a
    capacity/size/embedded/valid prefix in 3.13)."""
    if objects.model.instance_dicts != "dictoffset":
        return values + objects.fields(ManagedDictFields).values
    return values


def _split_items(
    objects: ObjectReader, keys: int, array: int, capacity: int | None, limit: int
) -> list[tuple[int, int]]:
    """Keys of a shared-key table with the values in ``array`` (value i belongs to entry i)."""
    entries = _key_entries(objects, keys, limit)
    if capacity is not None:
        entries = entries[:capacity]
    if not entries:
        return []
    values = _words(objects.memory.read(array, len(entries) * _PTR))
    return [(key, value) for (key, _), value in zip(entries, values, strict=True) if key and value]


def _is_text(objects: ObjectReader, flags: int) -> bool:
    """A str (3.x), or a str or unicode (2.7), by its type's flags."""
    return bool(
        flags & Py_TPFLAGS_UNICODE_SUBCLASS or (objects.py2 and flags & Py_TPFLAGS_STRING_SUBCLASS)
    )


def _find_strs(
    objects: ObjectReader, items: list[tuple[int, int]], keys: Sequence[str]
) -> dict[str, int]:
    """The values under the str `keys` (those found). Each key is read with one read of its
    header, which holds short ASCII text too (a sys.modules of hundreds of names is searched
    at a read a name); others are read in full only when of a wanted length."""
    flag_cache: dict[int, int] = {}
    # characters; bytes for a 2.7 str key
    lengths = {n for key in keys for n in (len(key), len(key.encode()))}
    longest = max(lengths)
    found: dict[str, int] = {}
    for k, v in items:
        try:
            tp, length, text = objects.str_head(k, longest)
            flags = flag_cache.get(tp)
            if flags is None:
                flags = flag_cache[tp] = _flags(objects, tp)
            if length not in lengths or not _is_text(objects, flags):
                continue
            if text is None:
                text = objects.text(k)
            if text in keys and text not in found:
                found[text] = v
                if len(found) == len(keys):
                    break
        except ReadError:
            continue  # one unreadable key does not hide the others
    return found


def _find_str(objects: ObjectReader, items: list[tuple[int, int]], key: str) -> int | None:
    return _find_strs(objects, items, (key,)).get(key)


def dict_get_str(objects: ObjectReader, d: int, key: str) -> int | None:
    """The value stored under the str ``key`` (a str or unicode key on 2.7), or None."""
    return _find_str(objects, dict_items(objects, d), key)


def dict_get_strs(objects: ObjectReader, d: int, keys: Sequence[str]) -> dict[str, int]:
    """The values stored under several str keys, in one pass over the dict: key -> value, for
    the keys it holds."""
    return _find_strs(objects, dict_items(objects, d), keys)


# --------------------------------------------------------------------------------------------
# ints


def int_value(objects: ObjectReader, obj: int) -> int:
    """The value of an int (2.7 int or long, 3.x int, bool included)."""
    flags = _type_flags(objects, obj)
    mem = objects.memory
    if objects.py2 and flags & Py_TPFLAGS_INT_SUBCLASS:
        return mem.i64(obj + objects.fields(Py2Fields).ob_ival)
    if not flags & Py_TPFLAGS_LONG_SUBCLASS:
        raise UnexpectedObject(obj, f"not an int but a {objects.type_name(obj)!r}")
    f = objects.fields(LongFields)
    if objects.model.ints == "lv_tag":  # 3.12+
        t = objects.fields(TaggedLongFields)
        tag = mem.u64(obj + t.lv_tag)
        ndigits = tag >> t.non_size_bits
        sign = 1 - (tag & t.sign_mask)
    else:
        size = mem.i64(obj + objects.ob_size)
        ndigits, sign = abs(size), (size > 0) - (size < 0)
    if sign not in (-1, 0, 1) or ndigits > MAX_INT_DIGITS:
        raise UnexpectedObject(obj, f"implausible int ({ndigits} digits, sign {sign})")
    if sign == 0 or ndigits == 0:
        return 0
    width, shift = f.digit_size, f.shift
    raw = mem.read(obj + f.ob_digit, ndigits * width)
    value = 0
    for i in range(ndigits - 1, -1, -1):
        value = (value << shift) | int.from_bytes(raw[i * width : (i + 1) * width], "little")
    return sign * value


# --------------------------------------------------------------------------------------------
# instance attributes


def instance_dict_items(objects: ObjectReader, obj: int) -> list[tuple[int, int]]:
    """The (name, value) pairs of an instance's ``__dict__``, wherever the version keeps them:
    2.7 old-style ``in_dict``; ``tp_dictoffset``; 3.11/3.12 managed dicts before the object;
    3.13 inline values after it. Empty if the object has no instance dict."""
    mem = objects.memory
    tp = objects.type_of(obj)
    if objects.py2 and objects.type_name(obj) == "instance":  # old-style class instance
        d = mem.u64(obj + objects.fields(Py2Fields).in_dict)
        return dict_items(objects, d) if d else []
    flags = _flags(objects, tp)
    if objects.model.instance_dicts != "dictoffset" and flags & Py_TPFLAGS_MANAGED_DICT:
        return _managed_items(objects, obj, tp, flags)
    d = _dictoffset_dict(objects, obj, tp)
    return dict_items(objects, d) if d else []


def instance_attribute(objects: ObjectReader, obj: int, name: str) -> int | None:
    """The value of attribute ``name`` in an instance's ``__dict__`` (not class attributes,
    slots or properties), or None if it is not there."""
    return _find_str(objects, instance_dict_items(objects, obj), name)


def _dictoffset_dict(objects: ObjectReader, obj: int, tp: int) -> int:
    """The dict pointer at ``tp_dictoffset`` (counted from the end of a variable-size object
    when negative, as _PyObject_GetDictPtr does); 0 when there is none."""
    f, mem = objects.fields(TypeFields), objects.memory
    offset = mem.i64(tp + f.tp_dictoffset)
    if offset == 0:
        return 0
    if offset < 0:
        basic = mem.i64(tp + f.tp_basicsize)
        item = mem.i64(tp + f.tp_itemsize)
        var = basic + abs(objects.size(obj)) * item
        offset += (var + _PTR - 1) & ~(_PTR - 1)
    if offset < 0 or offset > 1 << 20:
        raise UnexpectedObject(obj, f"implausible tp_dictoffset {offset}")
    return mem.u64(obj + offset)


def _managed_items(objects: ObjectReader, obj: int, tp: int, flags: int) -> list[tuple[int, int]]:
    """3.11+ managed dicts. The pre-header of a GC object with a managed dict is, going down
    from the object: PyGC_Head, then the dict slot, then (3.11) the values pointer or (3.12,
    3.13) the weakref list. That is MANAGED_DICT_OFFSET = -3 pointers in every non-free-threaded
    build (Include/internal/pycore_object.h); here it is computed from the table's
    sizeof(PyGC_Head) instead of taken as a number.

    3.11: dict slot = PyDictObject * or NULL; values slot = PyDictValues * of the shared keys.
    3.12: one PyDictOrValues slot: a dict, or (tagged with bit 0) the values pointer minus one.
    3.13: dict slot = PyDictObject * or NULL; without a dict, with Py_TPFLAGS_INLINE_VALUES the
          PyDictValues sit right after the object (tp_basicsize) with a ``valid`` flag.
    Values without a dict belong to the type's shared keys (PyHeapTypeObject.ht_cached_keys).
    """
    mem, model = objects.memory, objects.model
    dict_slot = obj - objects.fields(ManagedDictFields).gc_head - _PTR
    slot = mem.u64(dict_slot)
    if model.instance_dicts == "inline_values":
        if slot:
            return dict_items(objects, slot)
        if not flags & Py_TPFLAGS_INLINE_VALUES:
            return []
        f = objects.fields(InlineValuesFields)
        values = obj + mem.i64(tp + objects.fields(TypeFields).tp_basicsize)
        head = mem.read(values, f.values)
        if not head[f.valid]:
            return []
        return _cached_key_items(objects, tp, flags, values, head[f.capacity])
    if model.instance_dicts == "dict_or_values":
        if not slot:
            return []
        if slot & 1:
            return _cached_key_items(objects, tp, flags, slot + 1, None)
        return dict_items(objects, slot)
    # values_before (3.11)
    if slot:
        return dict_items(objects, slot)
    values = mem.u64(dict_slot - _PTR)
    return _cached_key_items(objects, tp, flags, values, None) if values else []


def _cached_key_items(
    objects: ObjectReader, tp: int, flags: int, values: int, capacity: int | None
) -> list[tuple[int, int]]:
    if not flags & Py_TPFLAGS_HEAPTYPE:
        raise UnexpectedObject(tp, "values without a dict on a static type")
    keys = objects.memory.u64(tp + objects.fields(ManagedDictFields).ht_cached_keys)
    if not keys:
        return []
    return _split_items(objects, keys, _values_array(objects, values), capacity, MAX_DICT_ENTRIES)
