# Processes in states only their native frames tell, for tests/test_native_states.py. Runs on
# Python 2.7 and 3.6+ (no f-strings), in a chroot without /proc too. It prints one line of
# JSON once in the state, {"pid": PID, "tids": [TID, ...]}, then stays in it until killed:
#
#   python native_states.py native-thread   a thread the interpreter does not know: created
#                                           with pthread_create through ctypes, it runs
#                                           libc's sleep(); the main thread sleeps in Python
#   python native_states.py gil THREADS     THREADS threads spin in pure Python: one holds the
#                                           GIL, the others wait for it in take_gil
#
# ruff: noqa: UP010 -- __future__ imports are for Python 2.7
from __future__ import print_function

import ctypes
import json
import os
import sys
import threading
import time

SYS_gettid = 186  # x86-64


def native_tid():
    get_native_id = getattr(threading, "get_native_id", None)
    if get_native_id is not None:
        return get_native_id()
    return ctypes.CDLL(None).syscall(SYS_gettid)


def announce(tids):
    print(json.dumps({"pid": os.getpid(), "tids": list(tids)}))
    sys.stdout.flush()


def native_thread():
    libc = ctypes.CDLL(None)
    thread = ctypes.c_ulong()
    start = ctypes.cast(libc.sleep, ctypes.c_void_p)  # sleep(1000): its argument is the seconds
    libc.pthread_create(ctypes.byref(thread), None, start, ctypes.c_void_p(1000))
    time.sleep(0.2)  # the new thread is asleep in sleep() well before this
    announce([native_tid()])
    while True:
        time.sleep(1000)


def spin(tids):
    tids.append(native_tid())
    count = 0
    while True:
        count += 1


def gil(threads):
    tids = []
    for _ in range(threads):
        worker = threading.Thread(target=spin, args=(tids,))
        worker.daemon = True
        worker.start()
    while len(tids) < threads:
        time.sleep(0.01)
    time.sleep(0.3)
    announce(tids)
    while True:
        time.sleep(1000)


if __name__ == "__main__":
    if sys.argv[1] == "native-thread":
        native_thread()
    else:
        gil(int(sys.argv[2]))
