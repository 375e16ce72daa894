"""Whether each thread's stack memory is really in the core.

A core may carry a thread's registers but not its stack: a size limit cut it, or the tool that
wrote the core saved the pages as zeros (gdb 13's gcore does so for the thread stacks of
processes of a newer glibc). Native frames live there, and from 3.11 so do the eval loop's
entry frames that link one run of Python frames to the next, so such a thread's stacks come
out short without any error. This says so, per thread.
"""

from __future__ import annotations

from triage.coredump.corefile import CoreFile
from triage.coredump.memory import CoreMemory
from triage.errors import AddressError

#: How much of the stack above the stack pointer is looked at. A live thread always has a
#: return address there (of the function it is in), so a page of zeros is never a stack.
WINDOW = 4096


def stack_warnings(core: CoreFile, memory: CoreMemory) -> list[str]:
    """One warning per thread whose stack memory at its stack pointer is missing or zeros."""
    out = []
    size = len(core.data)
    for thread in core.threads:
        sp = thread.registers.get("rsp")
        if not sp:
            continue
        segment = memory.segment_at(sp)
        end = min(sp + WINDOW, segment.vaddr + segment.filesz) if segment is not None else sp
        try:
            data = memory.read(sp, end - sp, core_only=True) if end > sp else b""
        except AddressError:
            data = b""
        where = f"thread {thread.tid}: its stack memory at 0x{sp:x}"
        effect = (
            "its native frames, and the Python frames linked through them (3.11+), cannot "
            "be read: this thread's stacks may be incomplete"
        )
        if not data and segment is not None and segment.offset + sp - segment.vaddr >= size:
            out.append(f"{where} was cut off the truncated core file; {effect}")
        elif not data:
            out.append(f"{where} is not in the core; {effect}")
        elif not any(data):
            out.append(
                f"{where} is all zeros in the core (the tool that wrote it did not save the "
                f"stack: gdb's gcore does so for some glibc versions); {effect}"
            )
    return out
