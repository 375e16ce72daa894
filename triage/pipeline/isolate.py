"""Analyses in a long-lived child process, so that one pathological core becomes an error row
instead of a hung or killed worker.

The child (`python -m triage.pipeline.isolate`) reads one JSON request per line on stdin and
answers one JSON line on stdout. Its heap is capped with RLIMIT_DATA (which, unlike
RLIMIT_AS, does not count the read-only mapping of the core itself); the parent waits at most
`time_limit` seconds and kills and replaces a child that overruns or dies. The child keeps its
caches (symbols, layouts keyed by build-id) from one core to the next.

The report comes back as plain data (`report.to_plain`, signature included, computed with the
fleet's rules), ready to be a dataset row: neither side imports pydantic for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage.kinds import SweepStatus
from triage.pipeline.childenv import child_environment
from triage.signature import Rules

if TYPE_CHECKING:
    from triage.report import CoreReport

#: The child's command: this module as `__main__`, imported without the current directory on
#: sys.path (Python 3.10 has no PYTHONSAFEPATH; see childenv).
CHILD_MAIN = (
    "import sys; sys.path[:1] = [p for p in sys.path[:1] if p]; import runpy; "
    "runpy.run_module('triage.pipeline.isolate', run_name='__main__', alter_sys=True)"
)


@dataclass
class Outcome:
    """What became of one analysis."""

    status: SweepStatus
    report: dict[str, Any] | None
    """The CoreReport as plain data (`report.to_plain`), when the analysis gave one."""
    message: str | None
    seconds: float


class AnalysisProcess:
    """Runs `triage.analyze_core` in a child process with a time limit and a heap cap."""

    def __init__(self, memory_limit_mb: int = 1024) -> None:
        self.memory_limit_mb = memory_limit_mb
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        env = child_environment()
        env["TRIAGE_MEMORY_LIMIT_MB"] = str(self.memory_limit_mb)
        return subprocess.Popen(
            [sys.executable, "-c", CHILD_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def warm(self) -> None:
        """Start the child now (it imports the engine while the worker waits for tasks)."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def analyze(
        self,
        path: str,
        time_limit: float,
        *,
        rules: Rules | None = None,
        **options: Any,
    ) -> Outcome:
        """Analyse the core at `path` with the fleet's signature `rules` (options as
        `triage.analyze_core` takes them)."""
        started = time.perf_counter()
        self.warm()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        fleet_rules = dataclasses.asdict(rules or Rules())
        request = (
            json.dumps({"path": path, "options": options, "rules": fleet_rules}).encode() + b"\n"
        )
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return Outcome("analysis_crashed", None, "the analysis process died", 0.0)
        line = _read_line(proc, time_limit)
        elapsed = time.perf_counter() - started
        if line is None:
            self.close()
            return Outcome(
                "timeout",
                None,
                f"the analysis took longer than the {time_limit:g} s limit and was stopped",
                elapsed,
            )
        if not line:
            code = proc.wait()
            self.close()
            return Outcome(
                "analysis_crashed",
                None,
                f"the analysis process died (exit status {code}); the core may be malformed",
                elapsed,
            )
        answer = json.loads(line)
        return Outcome(answer["status"], answer.get("report"), answer.get("message"), elapsed)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes | None:
    """One line from the child, b"" if it died, None if the time ran out."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b""
        buf += chunk
        if buf.endswith(b"\n"):
            return bytes(buf)


def serve() -> None:
    """The child's loop: one request line in, one answer line out, until stdin closes."""
    limit_mb = int(os.environ.get("TRIAGE_MEMORY_LIMIT_MB", "0"))
    if limit_mb:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_mb << 20, limit_mb << 20))
    from triage.engine import analyze_core
    from triage.report import to_plain

    for line in sys.stdin.buffer:
        request = json.loads(line)
        report: CoreReport | None
        answer: str | None
        try:
            rules = Rules(**request["rules"])
            report = analyze_core(request["path"], signature_rules=rules, **request["options"])
            status = report.error.kind if report.error else "ok"
            message = report.error.message if report.error else None
            answer = json.dumps({"status": status, "report": to_plain(report), "message": message})
        except MemoryError:
            report = answer = None  # let go of what filled the heap before saying so
            answer = json.dumps(
                {
                    "status": "memory_limit",
                    "report": None,
                    "message": f"the analysis needed more than {limit_mb} MB of heap",
                }
            )
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
