"""Make the demo cores: `python scripts/make_demo_core.py DIR [--crashes]` (`make demo`).

Runs the test-suite's target program (tests/programs/target.py) with 2 worker threads under one
of this machine's interpreters (a pyenv 3.12 if there is one), dumps it with gcore while it
sleeps, and leaves DIR/core.zst (zstd-compressed; the plain core is removed). With --crashes
it also leaves real crash cores of other interpreters: crash-segv-VERSION.gz (SIGSEGV at a
fault address) and crash-abort-VERSION (SIGABRT), so a sweep of DIR has several groups.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import corefactory  # noqa: E402


def pick_interpreter() -> corefactory.Interpreter | None:
    interps = corefactory.find_interpreters()
    pyenv_312 = [i for i in interps if i.version[:2] == (3, 12) and i.id.startswith("py")]
    return (pyenv_312 or interps or [None])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", metavar="DIR", help="directory to put core.zst in (created)")
    parser.add_argument("--crashes", action="store_true", help="add real crash cores too")
    args = parser.parse_args(argv)

    interp = pick_interpreter()
    if interp is None:
        print(
            "make_demo_core: no Python interpreter found to run the demo program", file=sys.stderr
        )
        return 1
    out_dir = Path(args.dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "core.zst"
    with tempfile.TemporaryDirectory(prefix="triage-demo-", dir=out_dir) as work:
        try:
            case = corefactory.make_gcore(interp, work, threads=2)
        except corefactory.CoreUnavailable as exc:
            print(f"make_demo_core: cannot make a core here: {exc}", file=sys.stderr)
            return 1
        plain_size = os.path.getsize(case.path)
        packed = corefactory.compress(case.path, "zstd", Path(work) / "core.zst")
        os.unlink(case.path)
        shutil.move(packed, target)
    version = ".".join(map(str, interp.version))
    tids = ", ".join(map(str, case.tids))
    print(
        f"made {target}: gcore core of {interp.path} {version} (pid {case.pid}, threads {tids}), "
        f"{os.path.getsize(target)} bytes, {plain_size} bytes uncompressed"
    )
    print(f"analyse it with: triage core {target}")
    if args.crashes:
        make_crashes(out_dir)
    return 0


def make_crashes(out_dir: Path) -> None:
    """A SIGSEGV core (gzip) and a SIGABRT core from two other interpreters, if they crash
    into core files here (the kernel's core_pattern must write files)."""
    interps = [i for i in corefactory.find_interpreters() if i.shared]
    picks = [(kind, interps[n % len(interps)]) for n, kind in enumerate(("segv", "abort"))]
    for kind, interp in picks:
        version = ".".join(map(str, interp.version))
        with tempfile.TemporaryDirectory(prefix="triage-demo-", dir=out_dir) as work:
            try:
                case = corefactory.make_crash(interp, work, kind)
            except corefactory.CoreUnavailable as exc:
                print(f"make_demo_core: no {kind} core: {exc}", file=sys.stderr)
                continue
            name = f"crash-{kind}-{version}"
            if kind == "segv":
                packed = corefactory.compress(case.path, "gzip", Path(work) / (name + ".gz"))
                shutil.move(packed, out_dir / (name + ".gz"))
                name += ".gz"
            else:
                shutil.move(case.path, out_dir / name)
        print(f"made {out_dir / name}: {kind} crash of {interp.path} {version}")


if __name__ == "__main__":
    sys.exit(main())
