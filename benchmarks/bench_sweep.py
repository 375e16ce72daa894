"""Sweep throughput against `pystack core` run two at a time, and worker memory.

    python benchmarks/bench_sweep.py [--cores 100] [--write benchmarks/SWEEP.md]

Makes a corpus of gcore cores (every installed CPython in turn, half of them compressed with
zstd), then, in the same run:

* `triage sweep CORPUS --output DATASET --workers 2` (the embedded cluster), wall clock;
* `pystack core` on every core, two processes at a time (a .zst core is first decompressed
  with `zstd -d`, as pystack cannot read it), wall clock;
* the peak resident memory of each Dask worker process together with its analysis child,
  sampled every 100 ms during the sweep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from common import ENV, TRIAGE, compile_triage, corefactory, pystack_command


def make_corpus(dest: Path, count: int) -> list[Path]:
    interps = [i for i in corefactory.find_interpreters() if i.version[:2] >= (3, 6)]
    cores: list[Path] = []
    for n in range(count):
        interp = interps[n % len(interps)]
        case = corefactory.make_gcore(interp, dest / f"make{n}", threads=1)
        target = dest / f"core.{n:04d}.{interp.id}"
        os.rename(case.path, target)
        shutil.rmtree(dest / f"make{n}", ignore_errors=True)
        if n % 2:
            corefactory.compress(target, "zstd", str(target) + ".zst")
            target.unlink()
            target = Path(str(target) + ".zst")
        cores.append(target)
    return cores


class MemorySampler(threading.Thread):
    """Peak RSS of each dask worker process plus its children, while the sweep runs."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                procs = self.root.children(recursive=True)
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    kids = proc.children(recursive=False)
                    # A Dask worker: a spawned process whose children include analysis children
                    # (the nanny's child is the worker, so count only isolate children).
                    isolates = [
                        c for c in kids if "triage.pipeline.isolate" in " ".join(c.cmdline())
                    ]
                    if not isolates:
                        continue
                    rss = proc.memory_info().rss + sum(c.memory_info().rss for c in isolates)
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)


def pystack_two_at_a_time(cores: list[Path], scratch: Path) -> float:
    pystack = pystack_command()

    def one(core: Path) -> None:
        path = core
        if core.suffix == ".zst":
            path = scratch / (core.name + ".plain")
            subprocess.run(["zstd", "-q", "-d", "-f", "-o", str(path), str(core)], check=True)
        subprocess.run(
            [pystack, "core", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if path != core:
            path.unlink()

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, cores))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=100)
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    compile_triage()
    with tempfile.TemporaryDirectory(prefix="triage-bench-sweep-") as tmp:
        scratch = Path(tmp)
        corpus = scratch / "corpus"
        corpus.mkdir()
        t0 = time.perf_counter()
        cores = make_corpus(corpus, args.cores)
        made = time.perf_counter() - t0
        size = sum(c.stat().st_size for c in cores)
        out = scratch / "dataset"
        proc = subprocess.Popen(
            [
                *TRIAGE,
                "sweep",
                str(corpus),
                "--output",
                str(out),
                "--workers",
                "2",
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = MemorySampler(proc.pid)
        sampler.start()
        start = time.perf_counter()
        _, err = proc.communicate()
        t_sweep = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        summary = [line for line in err.splitlines() if " done: " in line]
        t_pystack = pystack_two_at_a_time(cores, scratch)
    peak = max(sampler.peaks.values(), default=0)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs: {len(cores)} gcore "
        f"cores of CPython 3.6-3.13 (half zstd), {size / 1e6:.0f} MB on disk "
        f"(corpus made in {made:.0f} s).",
        "",
        "| run | wall | cores/s |",
        "|---|---|---|",
        f"| triage sweep, embedded cluster, 2 workers (includes cluster start) | {t_sweep:.1f} s "
        f"| {len(cores) / t_sweep:.2f} |",
        f"| pystack core, 2 at a time (.zst decompressed first) | {t_pystack:.1f} s "
        f"| {len(cores) / t_pystack:.2f} |",
        "",
        f"Throughput ratio triage / pystack: **{t_pystack / t_sweep:.2f}x**",
        "",
        "Peak RSS per worker (worker process + its analysis child): "
        + ", ".join(f"{v / 1e6:.0f} MB" for v in sampler.peaks.values())
        + f" (max {peak / 1e6:.0f} MB)",
        "",
        "Sweep summary: " + (summary[-1] if summary else err.strip()[-300:]),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text("# `triage sweep` benchmark\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
