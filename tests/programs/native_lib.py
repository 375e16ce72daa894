# Calls into a C library of the test's own (built at test time by tests/test_native_dwarf.py)
# through ctypes, for cores whose native frames the test knows line for line:
#
#   python native_lib.py LIBRARY.so
#
# prints one line of JSON, {"pid": PID, "tids": [TID]}, then calls outer(1000), which calls
# leaf(), into which the library inlined middle(), which sleeps in libc's sleep().
# ruff: noqa: UP010 -- __future__ imports are for Python 2.7
from __future__ import print_function

import ctypes
import json
import os
import sys
import threading


def native_tid():
    get_native_id = getattr(threading, "get_native_id", None)
    if get_native_id is not None:
        return get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86-64


library = ctypes.CDLL(sys.argv[1])
print(json.dumps({"pid": os.getpid(), "tids": [native_tid()]}))
sys.stdout.flush()
library.outer(1000)
