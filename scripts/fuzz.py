"""The long fuzzing run (`make fuzz`): tests/test_fuzz.py with many more mutants and fresh
seeds, for a nightly job.

    python scripts/fuzz.py [--examples 50000] [--dir .fuzz]

Hypothesis keeps every example it found interesting in DIR/examples (replayed first on the
next run, so a night's findings are tried again the next night), and every failing mutant is
written to DIR/reproducers as NAME.core (the mutated core) and NAME.json (its base, the
mutation, what went wrong): `triage core DIR/reproducers/NAME.core --locals --native`
reproduces it. The outcome counts per mutation class are printed at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=50000, help="mutants in all")
    parser.add_argument("--dir", default=str(ROOT / ".fuzz"), help="examples and reproducers")
    args = parser.parse_args()
    where = Path(args.dir).resolve()
    env = dict(
        os.environ,
        TRIAGE_FUZZ_EXAMPLES=str(args.examples),
        TRIAGE_FUZZ_DATABASE=str(where / "examples"),
        TRIAGE_FUZZ_REPRODUCERS=str(where / "reproducers"),
    )
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
    status = subprocess.call([*argv, str(ROOT / "tests" / "test_fuzz.py")], env=env, cwd=ROOT)
    kept = (
        sorted((where / "reproducers").glob("*.json")) if (where / "reproducers").is_dir() else []
    )
    print(f"fuzz: {len(kept)} reproducers in {where / 'reproducers'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
