"""Sweep throughput against `pystack core` run two at a time, and worker memory.

    python benchmarks/bench_sweep.py [--sizes 100,400] [--runs 5] [--corpus DIR] [--write FILE]

Makes a corpus of cores of every installed CPython 3.6+ in turn: half of them kernel cores of
real crashes (a SIGSEGV in C called through ctypes, an abort()), whose crashed thread the
sweep unwinds natively for its signature, half gcore snapshots; half of each compressed with
zstd. Then, for the corpus and for its first cores (`--sizes`), alternating the two sides
`--runs` times in the same run:

* `triage sweep CORPUS --output DATASET --workers 2` (the embedded cluster), wall clock of
  the whole command;
* `pystack core` on every core, two processes at a time (a .zst core is first decompressed
  with `zstd -d`, as pystack cannot read it), wall clock;
* the peak resident memory of each Dask worker process together with its analysis child,
  sampled every 100 ms during the sweep;

From two sizes it derives the throughput of a long sweep, where the fixed costs (start-up,
the cluster, the first sight of each build by each worker) are spread over thousands of
cores: the extra cores of the larger corpus over the extra time they take. Last, the same
memory figure for a sweep of one big core (a process holding
`--big-core-mb` MB, zstd-compressed), to show that it does not grow with the core.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from common import ENV, TRIAGE, compile_triage, corefactory, pystack_command

#: The corpus's cores in turn: a snapshot, a crash in C, a snapshot, an abort().
KINDS = ("gcore", "segv", "gcore", "abort")


def make_corpus(dest: Path, count: int, kinds: tuple[str, ...] = KINDS) -> list[Path]:
    interps = [i for i in corefactory.find_interpreters() if i.version[:2] >= (3, 6)]
    cores: list[Path] = []
    for n in range(count):
        interp = interps[n % len(interps)]
        kind = kinds[n % len(kinds)]
        if kind == "gcore":
            case = corefactory.make_gcore(interp, dest / f"make{n}", threads=1)
        else:
            case = corefactory.make_crash(interp, dest / f"make{n}", kind, threads=1)
        target = dest / f"core.{n:04d}.{interp.id}.{kind}"
        os.rename(case.path, target)
        shutil.rmtree(dest / f"make{n}", ignore_errors=True)
        if n % 4 in (1, 2):
            corefactory.compress(target, "zstd", str(target) + ".zst")
            target.unlink()
            target = Path(str(target) + ".zst")
        cores.append(target)
    return cores


def peak_rss(proc: psutil.Process) -> int:
    """The process's peak resident set so far (the kernel's VmHWM), in bytes."""
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return proc.memory_info().rss


class MemorySampler(threading.Thread):
    """Peak RSS of each dask worker process plus its analysis children, while the sweep runs:
    the sum of each one's high-water mark (VmHWM), read every 100 ms (an upper bound: the
    two peaks need not coincide)."""

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
                    rss = peak_rss(proc) + sum(peak_rss(c) for c in isolates)
                except (psutil.Error, OSError):
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


@dataclass
class SweepRun:
    wall: float
    peaks: dict[int, int]
    summary: str

    @property
    def analysis_rate(self) -> float:
        """Cores per second of the analysis phase, as the sweep's own summary says."""
        match = re.search(r"([\d.]+) cores/s", self.summary)
        return float(match.group(1)) if match else 0.0


def triage_sweep(corpus: Path, out: Path, sample_memory: bool = False) -> SweepRun:
    """One `triage sweep` of the corpus on the embedded cluster, into a new dataset. Memory is
    sampled only when asked: the sampler's own CPU would slow a timed run."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen(
        [*TRIAGE, "sweep", str(corpus), "--output", str(out), "--workers", "2"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = MemorySampler(proc.pid)
    if sample_memory:
        sampler.start()
    start = time.perf_counter()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if sample_memory:
        sampler.stop.set()
        sampler.join()
    summary = [line for line in err.splitlines() if " done: " in line]
    if proc.returncode != 0 or not summary:
        raise SystemExit(f"triage sweep failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return SweepRun(wall, sampler.peaks, summary[-1])


BIG_PROGRAM = """
import os, sys, time
ballast = [os.urandom(1 << 20) for _ in range(int(sys.argv[1]) // 2)]  # incompressible half
zeros = bytearray((int(sys.argv[1]) // 2) << 20)                          # and a compressible one
for page in range(0, len(zeros), 4096):
    zeros[page] = 1                                                        # really allocated
print(os.getpid(), flush=True)
time.sleep(600)
"""


def big_core(dest: Path, megabytes: int) -> Path:
    """A zstd gcore core of a Python process holding `megabytes` MB of heap."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BIG_PROGRAM, str(megabytes)], stdout=subprocess.PIPE, text=True
    )
    try:
        pid = int(proc.stdout.readline())
        prefix = dest / "big"
        subprocess.run(["gcore", "-o", str(prefix), str(pid)], capture_output=True, check=True)
    finally:
        proc.kill()
        proc.wait()
    core = Path(f"{prefix}.{pid}")
    zst = Path(corefactory.compress(core, "zstd", dest / "core.big.zst"))
    core.unlink()
    return zst


def build_of(core: Path) -> str:
    """The interpreter a corpus core was made with (core.NNNN.ID.KIND[.zst])."""
    match = re.match(r"core\.\d+\.(.+)\.(gcore|segv|abort)", core.name)
    return match.group(1) if match else core.name


def subset(corpus: Path, cores: list[Path], count: int) -> Path:
    """A directory holding the corpus's first `count` cores (hard links)."""
    if count == len(cores):
        return corpus
    where = corpus.parent / f"{corpus.name}-first{count}"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir()
    for core in cores[:count]:
        os.link(core, where / core.name)
    return where


def marginal(small: tuple[int, float], big: tuple[int, float]) -> float:
    """Cores per second of the cores one corpus has beyond the other: the throughput of a
    long sweep, where the fixed costs (start-up, cluster, first sight of each build) are
    paid once for thousands of cores."""
    (n1, t1), (n2, t2) = small, big
    return (n2 - n1) / (t2 - t1) if t2 > t1 else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="100,400",
        help="corpus sizes swept, comma-separated (default 100,400); the smaller ones are the "
        "first cores of the largest",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--corpus", metavar="DIR", help="reuse (or make once) the corpus here")
    parser.add_argument(
        "--big-core-mb", type=int, default=1024, help="heap of the memory-bound core (0: none)"
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help=f"the corpus's cores in turn (gcore, segv, abort; default {','.join(KINDS)})",
    )
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    sizes = sorted({int(n) for n in args.sizes.split(",")})
    compile_triage()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="triage-bench-sweep-") as tmp:
        scratch = Path(tmp)
        corpus = Path(args.corpus) if args.corpus else scratch / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        cores = sorted(p for p in corpus.iterdir() if p.name.startswith("core."))
        if len(cores) != sizes[-1]:
            for p in cores:
                p.unlink()
            cores = make_corpus(corpus, sizes[-1], tuple(args.kinds.split(",")))
        made = time.perf_counter() - t0
        size = sum(c.stat().st_size for c in cores)
        dirs = {n: subset(corpus, cores, n) for n in sizes}
        sweeps: dict[int, list[SweepRun]] = {n: [] for n in sizes}
        pystacks: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(args.runs):  # alternated, so that both sides see the same machine
            for n in sizes:
                sweeps[n].append(triage_sweep(dirs[n], scratch / "dataset"))
                pystacks[n].append(pystack_two_at_a_time(cores[:n], scratch))
        sampled = triage_sweep(corpus, scratch / "dataset", sample_memory=True)
        big = None
        if args.big_core_mb:
            bigdir = scratch / "big"
            bigdir.mkdir()
            zst = big_core(bigdir, args.big_core_mb)
            big = (zst.stat().st_size, triage_sweep(bigdir, scratch / "big-dataset", True))
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs. Corpus: "
        f"{len(cores)} cores of CPython 3.6-3.13 ({len({build_of(c) for c in cores})} "
        f"builds), half kernel cores of crashes (SIGSEGV in C, abort(): the sweep unwinds "
        f"their crashed thread), half gcore snapshots, half of all zstd, "
        f"{size / 1e6:.0f} MB on disk (ready in {made:.0f} s); the smaller corpora are its "
        f"first cores. {args.runs} runs of each side, alternated. Load average (1 min) "
        f"before and after: {load[0]:.1f}, {os.getloadavg()[0]:.1f}.",
        "",
        "Sides: `triage sweep CORPUS --output DATASET --workers 2` on the embedded cluster "
        "(the whole command: start-up, cluster, analysis, Parquet, exit), and `pystack core` "
        "on each core, 2 at a time (a .zst decompressed first with `zstd -d`).",
        "",
        "| cores | triage sweep (median) | runs | pystack, 2 at a time (median) | runs "
        "| ratio (median of the runs' ratios) | analysis phase alone |",
        "|---|---|---|---|---|---|---|",
    ]
    medians: dict[int, tuple[float, float]] = {}
    for n in sizes:
        t_sweep = statistics.median(r.wall for r in sweeps[n])
        t_pystack = statistics.median(pystacks[n])
        medians[n] = (t_sweep, t_pystack)
        ratios = [p / r.wall for r, p in zip(sweeps[n], pystacks[n], strict=True)]
        rate = statistics.median(r.analysis_rate for r in sweeps[n])
        lines.append(
            f"| {n} | {t_sweep:.2f} s | "
            + ", ".join(f"{r.wall:.2f}" for r in sweeps[n])
            + f" | {t_pystack:.2f} s | "
            + ", ".join(f"{t:.2f}" for t in pystacks[n])
            + f" | **{statistics.median(ratios):.2f}x** ("
            + ", ".join(f"{x:.2f}" for x in ratios)
            + f") | {rate:.1f} cores/s |"
        )
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        tri = marginal((lo, medians[lo][0]), (hi, medians[hi][0]))
        pys = marginal((lo, medians[lo][1]), (hi, medians[hi][1]))
        lines += [
            "",
            f"Throughput of a long sweep (the {hi - lo} cores the {hi}-core corpus has beyond "
            f"the {lo}-core one, from the medians; fixed costs cancel out): triage "
            f"{tri:.1f} cores/s, pystack {pys:.1f} cores/s: **{tri / pys:.2f}x**",
        ]
    peaks = list(sampled.peaks.values())
    lines += [
        "",
        "Peak RSS per worker (worker process + its analysis child: the sum of their kernel "
        f"high-water marks, VmHWM) in one more sweep of the {len(cores)} cores (not timed): "
        + ", ".join(f"{v / 1e6:.0f} MB" for v in peaks)
        + f" (max {max(peaks, default=0) / 1e6:.0f} MB)",
    ]
    if big is not None:
        zsize, run = big
        lines += [
            "",
            f"Memory bound: one gcore core of a process holding {args.big_core_mb} MB "
            f"({zsize / 1e6:.0f} MB zstd): peak RSS per worker "
            + ", ".join(f"{v / 1e6:.0f} MB" for v in run.peaks.values())
            + f"; {run.summary.split('triage: ')[-1]}",
        ]
    lines += ["", "Last sweep's summary: " + sweeps[sizes[-1]][-1].summary.split("triage: ")[-1]]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text("# `triage sweep` benchmark\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
