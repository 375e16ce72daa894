# Processes with odd properties, for tests/test_hardening.py. Runs on Python 2.7 and 3.6+ (no
# f-strings), in a chroot without /proc too. It prints one line of JSON,
# {"pid": PID, "tids": [MAIN_TID, ...]}, then dies of SIGABRT (os.abort()) as MODE says:
#
#   python odd_process.py big MIB   with an anonymous mapping of MIB MiB it never touched: the
#                                   kernel writes it as a hole, a sparse core of that size
#   python odd_process.py strings   with strings that are not valid Unicode: threads named
#                                   BAD (bytes that are not UTF-8: a 2.7 str, 3.x's
#                                   surrogateescape), NAMED (valid, not ASCII) and, on 3.x, LONE
#                                   (a UCS-2 string with a lone surrogate; 2.7 wants str names),
#                                   all sleeping; the main thread aborts in bad_strings(BAD,
#                                   LONE) while handling ValueError(BAD), raised while handling
#                                   ValueError(LONE). The test runs a copy of this file from a
#                                   directory whose name is not UTF-8.
#
# ruff: noqa: UP010, UP036, RUF005 -- __future__ imports, the version test, list concatenation:
# for Python 2.7
from __future__ import print_function

import ctypes
import json
import mmap
import os
import sys
import threading
import time

SYS_gettid = 186  # x86-64

if sys.version_info[0] == 2:
    BAD = "caf\xe9 \xff"
    LONE = "lone \\ud800 surrogate".decode("unicode_escape")
    NAMED = "\xc3\xbcn\xc3\xafc\xc3\xb6de"  # UTF-8
    THREADS = [BAD, NAMED]
else:
    BAD = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
    LONE = "lone \ud800 surrogate"
    NAMED = "\xfcn\xefc\xf6de"
    THREADS = [BAD, LONE, NAMED]


def gettid():
    return ctypes.CDLL(None).syscall(SYS_gettid)


def sleeper(tids, ready):
    tids.append(gettid())
    ready.release()
    while True:
        time.sleep(1000)


def start_threads(names):
    tids, ready = [], threading.Semaphore(0)
    for name in names:
        thread = threading.Thread(target=sleeper, args=(tids, ready), name=name)
        thread.daemon = True
        thread.start()
        ready.acquire()
    return tids


def announce(tids):
    print(json.dumps({"pid": os.getpid(), "tids": [gettid()] + tids}))
    sys.stdout.flush()
    time.sleep(0.5)  # the threads are back in their sleep


def bad_strings(bad, lone):
    raw = b"\xff\xfe"  # noqa: F841 -- a local for --locals
    try:
        raise ValueError(lone)
    except ValueError:
        try:
            raise ValueError(bad)
        except ValueError:
            os.abort()


def main(mode, argument):
    if mode == "big":
        mapping = mmap.mmap(-1, int(argument) << 20)  # noqa: F841 -- kept until the abort
        announce([])
        os.abort()
    elif mode == "strings":
        announce(start_threads(THREADS))
        bad_strings(BAD, LONE)
    raise SystemExit("unknown mode: " + mode)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
