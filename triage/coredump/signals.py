"""Why a core was made: the signal, its sender or fault address, told as users expect."""

from __future__ import annotations

import json
import signal as _signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from triage.coredump.notes import SigInfo, ThreadStatus

if TYPE_CHECKING:
    from triage.report import Origin

SI_USER, SI_QUEUE, SI_TKILL, SI_KERNEL = 0, -1, -6, 0x80
FAULT_SIGNALS = {_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGFPE}
# Signals whose default action dumps core (signal(7)). A core "made" by any other signal
# (gcore's SIGSTOP, gdb's generate-core-file, ...) was taken on demand.
CORE_SIGNALS = FAULT_SIGNALS | {
    _signal.SIGQUIT,
    _signal.SIGTRAP,
    _signal.SIGABRT,
    _signal.SIGXCPU,
    _signal.SIGXFSZ,
    _signal.SIGSYS,
}
FAULT_WORDS: dict[int, str] = {
    _signal.SIGSEGV: "a segmentation fault",
    _signal.SIGBUS: "a bus error",
    _signal.SIGILL: "an illegal instruction",
    _signal.SIGFPE: "an arithmetic exception",
}


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        if _signal.SIGRTMIN <= number <= _signal.SIGRTMAX:
            return f"SIGRTMIN+{number - _signal.SIGRTMIN}"
        return f"SIG{number}"


def signal_number(text: str) -> int:
    """The number of a signal as people write it: SIGSEGV, SEGV, segv, 11, SIGRTMIN+2 (the
    names `signal_name` gives). ValueError for anything else."""
    name = text.strip().upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    if name.startswith("SIGRTMIN+") and name[9:].isdigit():
        number = _signal.SIGRTMIN + int(name[9:])
        if number <= _signal.SIGRTMAX:
            return number
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {json.dumps(text)}") from None


@dataclass(frozen=True, slots=True)
class CoreCause:
    """The signal that made the core and what it says about how the process died."""

    number: int
    name: str
    code: int
    errno: int
    origin: Origin
    sender_pid: int | None
    sender_uid: int | None
    fault_address: int | None
    description: str


def core_cause(siginfo: SigInfo | None, first_thread: ThreadStatus | None, pid: int) -> CoreCause:
    """Classify the core: crash (fault address), sent (by another process), signal, on_demand."""
    if siginfo is not None:
        number, code, errno = siginfo.signo, siginfo.code, siginfo.errno
    elif first_thread is not None:
        number = first_thread.signo or first_thread.cursig
        code, errno = first_thread.code, first_thread.errno
    else:
        number, code, errno = 0, 0, 0
    name = signal_name(number) if number else "none"
    sender_pid = sender_uid = fault = None
    if siginfo is not None and number in FAULT_SIGNALS and code > 0:
        fault = siginfo.fault_address
    elif siginfo is not None and code in (SI_USER, SI_QUEUE, SI_TKILL):
        sender_pid, sender_uid = siginfo.sender

    origin: Origin
    if number not in CORE_SIGNALS:
        origin = "on_demand"
        text = "The core file seems to have been generated on demand (the process did not crash)"
    elif fault is not None:
        origin = "crash"
        what = FAULT_WORDS.get(number, f"signal {name}")
        text = f"The process died due {what} accessing address: 0x{fault:x}"
    elif sender_pid is not None and sender_pid not in (0, pid):
        origin = "sent"
        text = f"The process died due receiving signal {name} sent by pid {sender_pid}"
    else:
        origin = "signal"
        text = f"The process died due receiving signal {name}"
    return CoreCause(number, name, code, errno, origin, sender_pid, sender_uid, fault, text)
