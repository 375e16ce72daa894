# Cores of an interpreter in a particular state, for tests/test_interpreter_states.py. Runs on
# Python 2.7 and 3.6-3.13 (no f-strings, nothing newer). It prints one line of JSON,
# {"pid": PID, "tids": [TID]}, once in the state, then stays in it until killed:
#
#   python interpreter_states.py gc     inside a garbage collection: a gc callback (3.x) spins
#                                       on the GIL at the collection's "start"
#   python interpreter_states.py exit   inside interpreter shutdown: the __del__ of a global of
#                                       __main__ sleeps as the module is torn down
#
# ruff: noqa: UP004, UP010 -- (object) bases and __future__ imports are for Python 2.7
from __future__ import print_function

import gc
import json
import os
import sys
import threading
import time


def native_tid():
    get_native_id = getattr(threading, "get_native_id", None)
    if get_native_id is not None:
        return get_native_id()
    import ctypes

    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86-64


READY = (json.dumps({"pid": os.getpid(), "tids": [native_tid()]}) + "\n").encode()


def in_collection(phase, info):
    if phase == "start":
        os.write(1, READY)
        while True:  # holds the GIL: the only thread, it never lets go
            pass


class Lingering(object):
    def __del__(self, write=os.write, sleep=time.sleep, ready=READY):
        write(1, ready)
        while True:
            sleep(1000)


if __name__ == "__main__":
    if sys.argv[1] == "gc":
        gc.callbacks.append(in_collection)
        gc.collect()
    else:
        keep = Lingering()
