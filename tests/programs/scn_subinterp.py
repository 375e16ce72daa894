# Runs inside a subinterpreter started by scenarios.py (mode "subinterp", Python 3.12+).
# It imports nothing that an isolated subinterpreter cannot load (no ctypes).
import json
import os
import sys
import threading
import time


def sub_main(fd):
    sub_sleep(fd)  # @sub_call


def sub_sleep(fd):
    frames = []
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        position = list(code.co_positions())[frame.f_lasti // 2]
        frames.append(
            [code.co_filename, frame.f_lineno, code.co_name, code.co_qualname, list(position)]
        )
        frame = frame.f_back
    frames.reverse()
    info = {"frames": frames, "innermost": "sub_sleep", "tid": threading.get_native_id()}
    os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
    time.sleep(1000)  # @sub_sleep
