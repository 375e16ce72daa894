# Processes that die or stop while they raise or handle exceptions, for tests/test_exceptions.py.
# Runs unchanged on Python 2.7 and 3.6+ (no f-strings, nothing newer). Each mode prints one line
# of JSON, {"pid": PID, "tids": {NAME: TID}}, then:
#
#   python exceptions.py handling      threads sleep inside except blocks ("nested": an
#                                      exception raised and caught inside another handler;
#                                      "generator": a generator handling one while its caller
#                                      handles another; "custom": a class of this program with
#                                      two arguments; "idle": nothing), then the main thread
#                                      calls os.abort() inside `except ValueError`, three
#                                      calls deep
#   python exceptions.py raised LIB    a C function of library LIB sets RuntimeError (with
#                                      PyErr_SetString) and calls abort() before returning
#   python exceptions.py uncaught      once a debugger is attached, raises ValueError out of
#                                      the main script (the interpreter prints it)
#   python exceptions.py last          raises ValueError out of the main script; an atexit
#                                      function then calls os.abort(): sys.last_value is set
#
# ruff: noqa: UP004, UP010 -- (object) bases and __future__ imports are for Python 2.7
from __future__ import print_function

import atexit
import ctypes
import json
import os
import sys
import threading
import time

HELD = {}  # thread name -> its native tid, once it sleeps where it should


def native_tid():
    get_native_id = getattr(threading, "get_native_id", None)
    if get_native_id is not None:
        return get_native_id()
    return ctypes.CDLL(None).syscall(186)  # SYS_gettid on x86-64


def ready(tids):
    print(json.dumps({"pid": os.getpid(), "tids": tids}))
    sys.stdout.flush()


def hold(name):
    HELD[name] = native_tid()
    while True:
        time.sleep(1000)


class Errors(object):
    class DiskFull(Exception):
        pass


def raise_value(text):
    raise ValueError(text)


def nested():
    try:
        raise_value("outer")
    except ValueError:
        try:
            raise TypeError("inner")
        except TypeError:
            hold("nested")


def handling_generator():
    try:
        raise_value("in generator")
    except ValueError:
        yield hold("generator")


def generator():
    try:
        {}["missing"]
    except KeyError:
        for _ in handling_generator():
            pass


def custom():
    try:
        raise Errors.DiskFull("/var", 28)
    except Errors.DiskFull:
        hold("custom")


def idle():
    hold("idle")


def third():
    try:
        raise_value("bad value")
    except ValueError:
        os.abort()


def second():
    third()


def first():
    second()


def main_handling():
    workers = [nested, generator, custom, idle]
    for target in workers:
        thread = threading.Thread(target=target, name=target.__name__)
        thread.daemon = True
        thread.start()
    while len(HELD) < len(workers):
        time.sleep(0.01)
    time.sleep(0.2)  # into their sleep
    tids = dict(HELD)
    tids["main"] = native_tid()
    ready(tids)
    first()


def traced():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("TracerPid:"):
                return int(line.split()[1]) != 0
    return False


def fail(text):
    raise ValueError(text)


def abort_at_exit():
    os.abort()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "handling":
        main_handling()
    elif mode == "raised":
        library = ctypes.PyDLL(sys.argv[2])
        ready({"main": native_tid()})
        library.raise_and_abort(b"set by C")
    elif mode == "uncaught":
        ready({"main": native_tid()})
        while not traced():
            time.sleep(0.01)
        fail("uncaught")
    elif mode == "last":
        atexit.register(abort_at_exit)
        ready({"main": native_tid()})
        fail("last one")
