# The program tests/test_locals.py makes cores of: frames whose arguments and locals are
# known. Runs unchanged on Python 2.7 and 3.6-3.13 (no f-strings, nothing newer).
#
#   python locals_target.py
#
# It prints one line of JSON, {"pid": PID, "tids": [TID]}, once `inner` (a closure called by
# `outer`) is asleep, and sleeps until killed.
#
# ruff: noqa: UP004, UP010 -- (object) bases and __future__ imports are for Python 2.7
from __future__ import print_function, unicode_literals  # 2.7: text is unicode

import ctypes
import gc
import json
import os
import sys
import threading
import time


class Point(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y


def native_tid():
    get_native_id = getattr(threading, "get_native_id", None)
    if get_native_id is not None:
        return get_native_id()
    import ctypes

    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86-64


def with_invalid_item():
    """(4, <an item pointing at 0xbad>, 6), as PyStack's tests make it: the tuple is never
    used again (and the collector is off) so the process does not trip on it."""
    made = tuple([4, object(), 6])
    ctypes.c_void_p.from_address(id(made) + tuple.__basicsize__ + 8).value = 0xBAD
    return made


def outer(count, ratio=0.5, *rest, **options):
    nothing = None
    flag = True
    big = 2**70
    huge = 10**500
    negative = -12345
    text = "h\u00e9llo w\u00f6rld"
    numbers = [1, 2, 3]
    pair = (4,)
    many = tuple(range(8))
    table = {1: "one", 2: None}
    point = Point(1, 2)
    long_text = "x" * 200
    nested = [1, 2, 3, [1, 2, [1]]]
    deep = [[[[[1]]]]]
    raw = b"\xff"
    broken = with_invalid_item()
    shared = 7

    def inner(step):
        here = shared + step
        print(json.dumps({"pid": os.getpid(), "tids": [native_tid()]}))
        sys.stdout.flush()
        while True:
            time.sleep(1000)
        return here

    inner(1)
    later = 1  # never reached: not yet set when the core is made
    return (
        later,
        nothing,
        flag,
        big,
        huge,
        negative,
        text,
        numbers,
        pair,
        many,
        table,
        point,
        long_text,
        nested,
        deep,
        raw,
        broken,
    )


if __name__ == "__main__":
    gc.disable()  # `broken` holds an invalid pointer: no collection may visit it
    outer(3, 0.25, "extra", key="value")
