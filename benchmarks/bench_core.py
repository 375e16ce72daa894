"""Speed of `triage core` against `pystack core` on the same cores, measured in the same run.

    python benchmarks/bench_core.py [--runs N] [--write benchmarks/RESULTS.md]

Makes gcore cores of the test program (2 worker threads) with CPython 3.8, 3.12 and 3.13
(whichever are installed) and, where the tests' Debian sid sysroot can be had (as root;
scripts/build_sysroot.sh), kernel cores (SIGQUIT) of sid's python3.13, 3.14, 3.14d and 3.15, read
by both tools from the host with `--lib-search-root` (PyStack also given the executable);
then times, as whole commands (wall clock, median of N runs, the commands taking turns run
after run):

* `triage core --header-only CORE` and `triage core CORE` against `pystack core CORE`;
* `triage core --locals CORE` and `--native` against `pystack core` with the same option;
* `triage core --header-only CORE.zst` against `zstd -dc CORE.zst > file` (decompression alone);
* in one process, the first and the second core of the same interpreter build
  (`triage.analyze_core`), to show what the per-build caches save.

The machine is shared and noisy: only medians and ratios measured in this run are meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ENV, TRIAGE, compile_triage, corefactory, pystack_command, walls

VERSIONS = ((3, 8), (3, 12), (3, 13))


def decompress_command(path: str, scratch: str) -> list[str]:
    """`zstd -dc PATH > FILE` (`false` where zstd is missing: the row then says nothing)."""
    zstd = shutil.which("zstd")
    out = os.path.join(scratch, "decompressed")
    if zstd is None:
        return ["false"]
    return ["sh", "-c", f'"{zstd}" -q -d -c "{path}" > "{out}"']


def in_process_cache(
    core_a: str, core_b: str, root: str | None, native: bool = False
) -> tuple[float, float]:
    """Seconds for a first and a second core of one build, in one fresh process (with
    `native`, their native stacks too: symbols, CFI and DWARF kept by build-id)."""
    code = (
        "import json,sys,time\n"
        "from triage import analyze_core\n"
        "root=sys.argv[3] or None; native=sys.argv[4]=='1'\n"
        "t=time.perf_counter(); analyze_core(sys.argv[1], lib_search_root=root, native=native)\n"
        "a=time.perf_counter()-t\n"
        "t=time.perf_counter(); analyze_core(sys.argv[2], lib_search_root=root, native=native)\n"
        "b=time.perf_counter()-t\n"
        "print(json.dumps([a,b]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, core_a, core_b, root or "", "1" if native else "0"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    )
    return tuple(json.loads(out.stdout))  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", metavar="FILE", help="also write the results as Markdown")
    args = parser.parse_args()
    compile_triage()
    pystack = pystack_command()
    triage = [*TRIAGE, "core"]
    found = corefactory.find_interpreters(sysroot=True)
    interps = {i.version[:2]: i for i in found if i.shared}
    chosen = [interps[v] for v in VERSIONS if v in interps]
    chosen += [i for i in found if i.sysroot is not None]  # the sid sysroot's, when it exists
    rows, cache_rows, zst_rows, locals_rows = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as scratch:
        for interp in chosen:
            a = corefactory.make_gcore(interp, Path(scratch) / f"{interp.id}-a", threads=2)
            b = corefactory.make_gcore(interp, Path(scratch) / f"{interp.id}-b", threads=2)
            zst = corefactory.compress(a.path, "zstd")
            ours = list(interp.triage_args)  # --lib-search-root ROOT for the sysroot's cores
            theirs = [interp.realpath, *ours] if interp.sysroot is not None else []
            times = walls(
                [
                    [pystack, "core", a.path, *theirs],
                    [*triage, "--header-only", a.path, *ours],
                    [*triage, a.path, *ours],
                    [pystack, "core", "--locals", a.path, *theirs],
                    [*triage, "--locals", a.path, *ours],
                    [pystack, "core", "--native", a.path, *theirs],
                    [*triage, "--native", a.path, *ours],
                    [*triage, "--header-only", zst, *ours],
                    decompress_command(zst, scratch),
                ],
                args.runs,
            )
            t_py, t_head, t_full, t_py_locals, t_locals, t_py_native, t_native, t_zst, t_dec = times
            rows.append((interp.id, os.path.getsize(a.path), t_py, t_head, t_full))
            locals_rows.append((interp.id, "--locals", t_py_locals, t_locals))
            locals_rows.append((interp.id, "--native", t_py_native, t_native))
            zst_rows.append((interp.id, os.path.getsize(zst), t_dec, t_head, t_zst))
            for native in (False, True):
                firsts, seconds = [], []
                for _ in range(max(3, args.runs // 2)):
                    first, second = in_process_cache(a.path, b.path, interp.sysroot, native)
                    firsts.append(first)
                    seconds.append(second)
                label = f"{interp.id}{' --native' if native else ''}"
                cache_rows.append((label, statistics.median(firsts), statistics.median(seconds)))
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs, "
        f"median of {args.runs} runs, cores of tests/programs/target.py with 2 threads: gcore "
        "for pyenv's builds, the kernel's (SIGQUIT) for the sid sysroot's (`sid*`, read with "
        "`--lib-search-root`).",
        "",
        "| core | size | pystack core | triage --header-only | ratio | triage (stacks) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for ident, size, t_py, t_head, t_full in rows:
        lines.append(
            f"| {ident} | {size / 1e6:.0f} MB | {t_py * 1e3:.0f} ms | {t_head * 1e3:.0f} ms | "
            f"{t_head / t_py:.2f}x | {t_full * 1e3:.0f} ms | {t_full / t_py:.2f}x |"
        )
    if rows:
        med = statistics.median(r[4] / r[2] for r in rows)
        lines.append(f"\nMedian ratio, full stacks, triage / pystack: **{med:.2f}x**")
    lines += [
        "",
        "| core | option | pystack core OPTION | triage core OPTION | ratio |",
        "|---|---|---|---|---|",
    ]
    for ident, option, t_py_option, t_option in locals_rows:
        lines.append(
            f"| {ident} | `{option}` | {t_py_option * 1e3:.0f} ms | {t_option * 1e3:.0f} ms | "
            f"{t_option / t_py_option:.2f}x |"
        )
    lines += [
        "",
        "| core.zst | size | zstd -dc > file | triage plain | triage .zst | .zst / decompression |"
        " extra over plain / decompression |",
        "|---|---|---|---|---|---|---|",
    ]
    for ident, size, t_dec, t_head, t_zst in zst_rows:
        lines.append(
            f"| {ident} | {size / 1e6:.1f} MB | {t_dec * 1e3:.0f} ms | {t_head * 1e3:.0f} ms | "
            f"{t_zst * 1e3:.0f} ms | {t_zst / t_dec:.2f}x | {(t_zst - t_head) / t_dec:.2f}x |"
        )
    lines += [
        "",
        "| build | first core (in-process) | second core, same build | speed-up |",
        "|---|---|---|---|",
    ]
    for ident, first, second in cache_rows:
        lines.append(
            f"| {ident} | {first * 1e3:.1f} ms | {second * 1e3:.1f} ms | {first / second:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text("# `triage core` benchmark\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
