# -*- coding: utf-8 -*-
# Stack scenarios the test-suite makes cores of (tests/test_stacks.py, via tests/stackcases.py).
# It must run unchanged on Python 2.7 and 3.6-3.13: no f-strings, nothing newer than the oldest
# interpreter has. Modules only some versions can parse live beside it (scn_*.py) and are
# imported only where they apply.
#
#   python scenarios.py MODE UNICODE_DIR
#
# MODE
#   multi      the main thread plus one thread per scenario (see start_multi); one core of it
#              covers nested calls, several threads, a lock, a busy loop, recursion,
#              generators, asyncio, methods/closures/lambdas, non-ASCII names, long files
#   crash      the main thread plus a sleeper and a thread named "crasher" that dies of SIGSEGV
#              (ctypes.string_at(0x75bcd15)) three calls deep once the test says "go"
#   subinterp  (3.12+) a thread that runs code in a subinterpreter, which sleeps there
#
# UNICODE_DIR holds scn_ünïcode_模块.py, copied there by the test from scn_unicode3.py (3.x) or
# scn_unicode2.py (2.7): a non-ASCII path is made at test time, never committed.
#
# Every thread records its own stack (file, f_lineno, co_name, co_qualname, positions) just
# before it blocks, the way the interpreter itself reports it live, and names the `# @MARKER`
# of the line it then blocks on. Once every thread has recorded, the main thread prints ONE
# line of JSON and sleeps in <module> -> first_func -> second_func -> third_func:
#
#   {"pid": PID, "ppid": PPID, "version": [3, 12, 1], "tids": {THREAD_NAME: TID, ...},
#    "stacks": {THREAD_NAME: {"frames": [[file, line, name, qualname, positions], ...],
#                             "innermost": MARKER}}, ...}
#
# Threads that must only start once the others block ("busy-loop", "crasher") first wait for
# one byte on standard input: the test writes it when every other thread sleeps.
#
# Tests never hard-code line numbers: they find `# @NAME` markers (stackcases.markers()).
#
# ruff: noqa: UP009, UP004, UP010, UP031, UP036, E731 -- Python 2.7 compatible on purpose
from __future__ import print_function

import json
import os
import sys
import threading
import time

SYS_gettid = 186  # x86-64
SEGV_ADDRESS = 0x75BCD15
RECURSION_DEPTH = 300
PROGRAM_DIR = os.path.dirname(os.path.abspath(__file__))
# scn_ünïcode_模块 (written as UTF-8 bytes: a str literal with \u escapes is bytes on 2.7)
UNICODE_MODULE = b"scn_\xc3\xbcn\xc3\xafcode_\xe6\xa8\xa1\xe5\x9d\x97".decode("utf-8")
# The name of the thread that runs it: ünïcode-線 (a non-ASCII thread name: 2- and 3-byte
# characters), a UTF-8 byte string on 2.7, whose Thread() takes str(name)
UNICODE_THREAD = b"\xc3\xbcn\xc3\xafcode-\xe7\xb7\x9a"
if sys.version_info[0] >= 3:
    UNICODE_THREAD = UNICODE_THREAD.decode("utf-8")


def native_tid():
    get_native_id = getattr(threading, "get_native_id", None)
    if get_native_id is not None:
        return get_native_id()
    import ctypes

    return ctypes.CDLL(None).syscall(SYS_gettid)


def live_qualname(frame):
    """The qualified name triage should report for `frame`: co_qualname (3.11+); before,
    `Class.method` for a method found through its first argument (self or cls) in the MRO of
    that argument's class (the function's __qualname__, or the class name on 2.7), else None."""
    code = frame.f_code
    if hasattr(code, "co_qualname"):
        return code.co_qualname
    if code.co_argcount < 1 or code.co_varnames[0] not in ("self", "cls"):
        return None
    first = frame.f_locals.get(code.co_varnames[0])
    cls = first if code.co_varnames[0] == "cls" else type(first)
    if not isinstance(cls, type):
        return None
    for klass in getattr(cls, "__mro__", (cls,)):
        name = code.co_name
        if name.startswith("__") and not name.endswith("__") and klass.__name__.lstrip("_"):
            name = "_" + klass.__name__.lstrip("_") + name
        attr = klass.__dict__.get(name)
        func = getattr(attr, "__func__", attr)
        if getattr(func, "__code__", None) is code:
            return getattr(func, "__qualname__", klass.__name__ + "." + code.co_name)
    return None


def code_position(code, lasti):
    """(line, end_line, column, end_column) of the instruction at lasti, as traceback computes
    it (3.11+), else None."""
    positions = getattr(code, "co_positions", None)
    if positions is None or lasti < 0:
        return None
    for index, position in enumerate(positions()):
        if index == lasti // 2:
            return list(position)
    return None


class Context(object):
    """What the threads share: the lock main holds, the recorded stacks, the ready count."""

    def __init__(self, expected):
        self.expected = expected  # how many threads record (main included)
        self.lock = threading.Lock()
        self.mutex = threading.Lock()
        self.arrived = threading.Semaphore(0)
        self.stacks = {}
        self.tids = {}
        self.extra = {}

    def record(self, innermost):
        """Record the caller's stack as the interpreter reports it, then count this thread in."""
        frame = sys._getframe(1)
        frames = []
        while frame is not None:
            code = frame.f_code
            frames.append(
                [
                    code.co_filename,
                    frame.f_lineno,
                    code.co_name,
                    live_qualname(frame),
                    code_position(code, frame.f_lasti),
                ]
            )
            frame = frame.f_back
        frames.reverse()
        name = threading.current_thread().name
        with self.mutex:
            self.stacks[name] = {"frames": frames, "innermost": innermost}
            self.tids[name] = native_tid()
        self.arrived.release()

    def announce(self):
        """Wait until every thread has recorded, then print the one JSON line."""
        for _ in range(self.expected):
            self.arrived.acquire()
        info = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "version": list(sys.version_info[:3]),
            "tids": self.tids,
            "stacks": self.stacks,
        }
        info.update(self.extra)
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()


def wait_for_go():
    """Block until the test writes one byte on standard input."""
    os.read(0, 1)


# ------------------------------------------------------------------------------------------
# Scenario 1: the main thread, nested calls


def third_func(ctx):
    ctx.record("main_sleep")
    ctx.announce()
    time.sleep(1000)  # @main_sleep


def second_func(ctx):
    third_func(ctx)  # @second_call


def first_func(ctx):
    second_func(ctx)  # @first_call


# ------------------------------------------------------------------------------------------
# Scenario 2: a sleeper, a thread blocked on the lock main holds, a busy thread


def sleeper_main(ctx):
    ctx.record("sleeper_sleep")
    time.sleep(1000)  # @sleeper_sleep


def lock_main(ctx):
    ctx.record("lock_acquire")
    ctx.lock.acquire()  # @lock_acquire


def busy_main(ctx):
    ctx.record("busy_wait")
    wait_for_go()  # @busy_wait
    count = 0
    while True:  # @busy_first
        count += 1
        if count > 1000000:
            count = 0  # @busy_last


# ------------------------------------------------------------------------------------------
# Scenario 3: recursion


def recursion_main(ctx):
    recurse(ctx, RECURSION_DEPTH)  # @recursion_call


def recurse(ctx, depth):
    if depth > 1:
        recurse(ctx, depth - 1)  # @recurse_call
    else:
        ctx.record("recurse_sleep")
        time.sleep(1000)  # @recurse_sleep


# ------------------------------------------------------------------------------------------
# Scenario 4: a generator driven by a for loop (the coroutines live in scn_async.py)


def generator_main(ctx):
    for _ in produce(ctx):  # @gen_for
        pass


def produce(ctx):
    ctx.record("gen_sleep")
    time.sleep(1000)  # @gen_sleep
    yield 1


def asyncio_thread_main(ctx):
    import scn_async

    scn_async.asyncio_main(ctx)  # @asyncio_call


# ------------------------------------------------------------------------------------------
# Scenario 5: methods, closures, lambdas


class Worker(object):
    def __init__(self, ctx):
        self.ctx = ctx

    @classmethod
    def start(cls, ctx):
        cls(ctx).run()  # @classmethod_call

    def run(self):
        outer(self.ctx)  # @method_call


def outer(ctx):
    def inner():
        nap = lambda: ctx.record("lambda_sleep") or time.sleep(1000)  # @lambda_sleep
        nap()  # @inner_call

    inner()  # @outer_call


# ------------------------------------------------------------------------------------------
# Scenario 6: a module with a non-ASCII path and (3.x) non-ASCII function names


def load_unicode_module(directory):
    if sys.version_info[0] == 2:
        import imp

        path = os.path.join(directory, UNICODE_MODULE.encode("utf-8") + b".py")
        return imp.load_source("scn_unicode", path)
    import importlib

    sys.path.insert(0, directory)
    try:
        return importlib.import_module(UNICODE_MODULE)
    finally:
        sys.path.remove(directory)


def unicode_main(ctx, module):
    module.entry(ctx)  # @unicode_call


# ------------------------------------------------------------------------------------------
# Scenario 7: lines above 1000 and calls spanning several lines (scn_lines.py)


def lines_main(ctx):
    import scn_lines

    scn_lines.lines_entry(ctx)  # @lines_call


# ------------------------------------------------------------------------------------------
# Scenario 9: a crash three calls deep in a worker thread


def crash_outer(ctx):
    crash_middle(ctx)  # @crash_outer_call


def crash_middle(ctx):
    crash_inner(ctx)  # @crash_middle_call


def crash_inner(ctx):
    import ctypes

    ctx.record("crash_call")
    wait_for_go()
    ctypes.string_at(SEGV_ADDRESS)  # @crash_call


def string_at_location():
    """Where ctypes.string_at (a Python function) calls the C function that faults."""
    import ctypes
    import inspect

    code = ctypes.string_at.__code__
    lines, first = inspect.getsourcelines(ctypes.string_at)
    for index, text in enumerate(lines):
        if "_string_at(" in text and "return" in text:
            return [code.co_filename, first + index, code.co_name]
    raise SystemExit("cannot find the call in ctypes.string_at")


# ------------------------------------------------------------------------------------------
# Scenario 8: subinterpreters (3.12+)


def subinterp_main(ctx):
    if sys.version_info >= (3, 13):
        import _interpreters as interpreters
    else:
        import _xxsubinterpreters as interpreters
    interp_id = interpreters.create()
    read_fd, write_fd = os.pipe()
    code = "\n".join(
        [
            "import sys",
            "sys.path.insert(0, %r)" % PROGRAM_DIR,
            "import scn_subinterp",
            "scn_subinterp.sub_main(%d)" % write_fd,
            "",
        ]
    )
    ctx.extra["subinterpreter_id"] = int(interp_id)
    ctx.extra["subinterpreter_code"] = code
    ctx.extra["ready_fd"] = read_fd
    ctx.record("subinterp_run")
    interpreters.run_string(interp_id, code)  # @subinterp_run


# ------------------------------------------------------------------------------------------


def start(ctx, name, target, args=(), stack_size=1 << 20):
    threading.stack_size(stack_size)  # small stacks keep the cores small
    thread = threading.Thread(target=target, name=name, args=args)
    thread.daemon = True
    thread.start()
    return thread


def start_multi(ctx, unicode_dir):
    module = load_unicode_module(unicode_dir)
    start(ctx, "sleeper", sleeper_main, (ctx,))
    start(ctx, "lock-waiter", lock_main, (ctx,))
    start(ctx, "busy-loop", busy_main, (ctx,))
    start(ctx, "recursion", recursion_main, (ctx,), stack_size=4 << 20)
    start(ctx, "generator", generator_main, (ctx,))
    start(ctx, "methods", Worker.start, (ctx,))
    start(ctx, UNICODE_THREAD, unicode_main, (ctx, module))
    start(ctx, "lines", lines_main, (ctx,))
    if sys.version_info[0] >= 3:
        start(ctx, "asyncio", asyncio_thread_main, (ctx,))


def read_line(fd):
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("the subinterpreter ended before it was ready")
        data += chunk
    return json.loads(data.decode("utf-8"))


def multi_threads():
    return 9 if sys.version_info[0] == 2 else 10


def main():
    mode = sys.argv[1]
    sys.path.insert(0, PROGRAM_DIR)
    if mode == "multi":
        ctx = Context(multi_threads())
        ctx.lock.acquire()  # held by main for good: "lock-waiter" blocks on it
        start_multi(ctx, sys.argv[2])
    elif mode == "crash":
        ctx = Context(3)
        ctx.extra["string_at"] = string_at_location()
        start(ctx, "sleeper", sleeper_main, (ctx,))
        start(ctx, "crasher", crash_outer, (ctx,))
    elif mode == "subinterp":
        ctx = Context(2)
        start(ctx, "subinterp", subinterp_main, (ctx,), stack_size=8 << 20)
    else:
        raise SystemExit("unknown mode: " + mode)
    return ctx


if __name__ == "__main__":
    CTX = main()
    if sys.argv[1] == "subinterp":
        # The subinterpreter's code sends its own stack through the pipe once in place.
        CTX.arrived.acquire()
        CTX.arrived.release()
        CTX.extra["subinterpreter_stack"] = read_line(CTX.extra.pop("ready_fd"))
    first_func(CTX)  # @main_call
