# Native crashes for tests/test_signatures.py. Runs on Python 2.7 and 3.6+ (no f-strings), in
# a chroot without /proc too. It prints one line of JSON, {"pid": PID, "tids": [MAIN_TID]},
# then dies as MODE says:
#
#   python native_crash.py MODE DIR
#
#   thread-abort    a thread started from C (crashlib.so in DIR) calls abort()
#   thread-strlen   a thread started from C calls strlen(NULL) in call_strlen()
#   path-a          Python calls crashlib's call_strlen(NULL) through path_a -> reach
#   path-b          the same C call through path_b -> reach
#   faulthandler-path-a  path-a with faulthandler enabled (3.3+): its handler re-raises
#   extension       the C extension crashext (crashext.so in DIR) faults in crash_here()
#   extension-abort crashext aborts with an exception set (RuntimeError: crashext gave up)
#   except-abort    os.abort() inside an `except ValueError` block
#
# ruff: noqa: UP010 -- __future__ imports are for Python 2.7
from __future__ import print_function

import ctypes
import json
import os
import sys
import time

SYS_gettid = 186  # x86-64


def announce():
    print(json.dumps({"pid": os.getpid(), "tids": [ctypes.CDLL(None).syscall(SYS_gettid)]}))
    sys.stdout.flush()


def crashlib(directory):
    lib = ctypes.CDLL(os.path.join(directory, "crashlib.so"))
    lib.call_strlen.argtypes = [ctypes.c_char_p]
    return lib


def reach(lib):
    lib.call_strlen(None)


def path_a(lib):
    reach(lib)


def path_b(lib):
    reach(lib)


def in_thread(lib, use_strlen):
    lib.start_native_thread(use_strlen)
    while True:
        time.sleep(1000)


def call_extension(directory, name):
    sys.path.insert(0, directory)
    import crashext

    getattr(crashext, name)()


def except_abort():
    try:
        raise ValueError("bad value 42")
    except ValueError:
        os.abort()


def main(mode, directory):
    announce()
    if mode == "thread-abort":
        in_thread(crashlib(directory), 0)
    elif mode == "thread-strlen":
        in_thread(crashlib(directory), 1)
    elif mode == "path-a":
        path_a(crashlib(directory))
    elif mode == "path-b":
        path_b(crashlib(directory))
    elif mode == "faulthandler-path-a":
        import faulthandler

        with open(os.devnull, "w") as devnull:
            faulthandler.enable(devnull)
            path_a(crashlib(directory))
    elif mode == "extension":
        call_extension(directory, "segv")
    elif mode == "extension-abort":
        call_extension(directory, "abort_with_error")
    elif mode == "except-abort":
        except_abort()
    raise SystemExit("unknown mode: " + mode)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
