# The program the test-suite makes cores of. It must run unchanged on Python 2.7 and 3.6-3.13:
# no f-strings, print() with a single argument, nothing newer than the oldest interpreter has.
#
#   python target.py THREADS ACTION [ADDRESS]
#
# It starts THREADS worker threads (named worker-0, worker-1, ...), waits until each has reported
# its native thread id, prints ONE line of JSON to stdout and flushes it:
#
#   {"pid": PID, "ppid": PPID, "tids": [MAIN_TID, WORKER_0_TID, ...]}
#
# then runs ACTION at the bottom of the fixed call chain
#   <module> -> first_func -> second_func -> third_func -> ...
#
#   sleep | wait   time.sleep(1000) in a loop, until killed or sent a signal
#   segv ADDRESS   ctypes.string_at(ADDRESS): SIGSEGV with that fault address
#   null           ctypes.string_at(0): SIGSEGV at address 0 (a NULL dereference)
#   abort          os.abort(): SIGABRT raised by the process on itself
#
# Worker threads run worker -> worker_sleep -> time.sleep(1000) in a loop.
#
# Tests never hard-code line numbers: corefactory.program_lines() finds every call in this file
# ("third_func:time.sleep" -> its line) and corefactory.main_stack() gives the expected frames.
#
# ruff: noqa: UP010, RUF005 -- __future__ imports and list concatenation are for Python 2.7
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


def worker_sleep():
    while True:
        time.sleep(1000)


def worker(index, tids, ready):
    tids[index] = native_tid()
    ready.release()
    worker_sleep()


def third_func(action, address):
    if action in ("sleep", "wait"):
        while True:
            time.sleep(1000)
    elif action in ("segv", "null"):
        ctypes.string_at(address)
    elif action == "abort":
        os.abort()
    raise SystemExit("unknown action: " + action)


def second_func(action, address):
    third_func(action, address)


def first_func(action, address):
    second_func(action, address)


def start_workers(count):
    tids = [None] * count
    ready = threading.Semaphore(0)
    for index in range(count):
        thread = threading.Thread(
            target=worker, name="worker-" + str(index), args=(index, tids, ready)
        )
        thread.daemon = True
        thread.start()
    for _ in range(count):
        ready.acquire()
    return tids


def announce(threads):
    tids = [native_tid()] + start_workers(threads)
    line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "tids": tids})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    ACTION = sys.argv[2]
    ADDRESS = int(sys.argv[3], 0) if ACTION == "segv" else 0
    announce(int(sys.argv[1]))
    first_func(ACTION, ADDRESS)
