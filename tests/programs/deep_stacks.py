# A process whose analysis needs a lot of memory: THREADS threads (the main one included), each
# DEPTH calls deep in `down`, then asleep. It prints one line of JSON once every thread is at
# the bottom:  {"pid": PID, "tids": [MAIN_TID, ...]}
#
#   python deep_stacks.py THREADS DEPTH
#
# Python 3.11+ only: from 3.11 a Python-to-Python call uses no C stack, so DEPTH can be large.
import json
import os
import sys
import threading
import time


def down(depth, bottom):
    if depth:
        down(depth - 1, bottom)
    else:
        bottom()


def asleep(ready):
    def bottom():
        ready.release()
        while True:
            time.sleep(1000)

    return bottom


def main():
    threads, depth = int(sys.argv[1]), int(sys.argv[2])
    sys.setrecursionlimit(depth + 1000)
    ready = threading.Semaphore(0)
    workers = [
        threading.Thread(target=down, args=(depth, asleep(ready)), daemon=True)
        for _ in range(threads - 1)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    tids = [threading.get_native_id()] + [w.native_id for w in workers]
    print(json.dumps({"pid": os.getpid(), "tids": tids}), flush=True)
    down(depth, asleep(threading.Semaphore(0)))


main()
