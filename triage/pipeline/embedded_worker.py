"""Imported by the embedded cluster's forkserver (`forkserver.WORKER_PRELOAD`), only there: the
worker processes forked from it ignore SIGINT.

A Ctrl-C on a terminal goes to the whole process group. The sweep's own process handles it:
it writes the rows analysed so far and shuts the cluster down, which stops the workers (and
their analysis children, which inherit the ignored signal). Each worker would otherwise print
a KeyboardInterrupt traceback among the sweep's lines. The forkserver hands its children the
SIGINT disposition it had once its preloads were imported: this one.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
