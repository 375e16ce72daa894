"""`triage ci`: the cores a CI job left behind, each told as known or new against a baseline,
with a Markdown summary, JUnit XML and an exit status the job can act on."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from triage.report import CoreReport, Signature

EXIT_OK, EXIT_CRASHES, EXIT_USAGE, EXIT_TRIAGE_FAILED = 0, 1, 2, 3
HEAD = 256 * 1024


class CiError(Exception):
    """triage ci cannot do its job (unreadable directory or baseline); one line."""


@dataclass
class Crash:
    """One core of the job, analysed."""

    path: str
    report: CoreReport
    known: bool

    @property
    def signature(self) -> Signature | None:
        return self.report.signature

    @property
    def key(self) -> str:
        sig = self.signature
        if sig is not None:
            return sig.id
        return f"error:{self.report.error.kind if self.report.error else 'unknown'}"

    @property
    def title(self) -> str:
        return self.report.test or os.path.basename(self.path)

    @property
    def summary(self) -> str:
        if self.signature is not None:
            return self.signature.text
        err = self.report.error
        return f"could not analyse: {err.message}" if err else "no Python stack"


def find_cores(directory: str) -> list[str]:
    """Every file under `directory` that is a core (plain or compressed), by content."""
    from triage.coredump.sniff import sniff_core

    root = Path(directory)
    if not root.is_dir():
        raise CiError(f"{directory} is not a directory; give the directory the job's cores are in")
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD)
        except OSError:
            continue
        if sniff_core(head)[1] is None:
            found.append(str(path))
    return found


def load_baseline(spec: str, storage_options: dict[str, Any] | None = None) -> set[str]:
    """Known signature ids: from a JSON file (`triage ci --json`, `triage groups --format json`,
    or a list of ids) or from a sweep dataset (directory or URL)."""
    if os.path.isfile(spec):
        try:
            data = json.loads(Path(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CiError(f"baseline {spec} is not readable JSON: {exc}") from None
        return _ids_from_json(data, spec)
    from triage.pipeline.query import connect
    from triage.pipeline.schema import column

    signature_id = column("report.signature.id")
    try:
        con, rows = connect(spec, storage_options)
        result = con.execute(
            f"SELECT DISTINCT {signature_id} FROM ({rows}) WHERE {signature_id} IS NOT NULL"
        ).fetchall()
    except Exception as exc:  # fsspec/duckdb: one line
        raise CiError(
            f"cannot read baseline dataset {spec}: {' '.join(str(exc).split())}"
        ) from None
    return {r[0] for r in result}


def _ids_from_json(data: Any, spec: str) -> set[str]:
    ids: Any = None
    if isinstance(data, list):
        ids = data
    elif isinstance(data, dict):
        for key in ("groups", "crashes"):
            if isinstance(data.get(key), list):
                entries = data[key]
                if all(isinstance(e, dict) for e in entries):
                    ids = [e.get("signature_id") for e in entries if e.get("signature_id")]
                break
        else:
            ids = data.get("signature_ids")
    if isinstance(ids, list) and all(isinstance(x, str) for x in ids):
        return set(ids)
    raise CiError(
        f"baseline {spec}: expected `triage ci --json` or `triage groups --format json` output, "
        f"or a JSON list of signature ids"
    )


def analyse(paths: list[str], known: set[str], **options: Any) -> list[Crash]:
    from triage.engine import analyze_core

    crashes = []
    for path in paths:
        report = analyze_core(path, **options)
        crash = Crash(path, report, known=False)
        crash.known = crash.key in known
        crashes.append(crash)
    return crashes


def failing(crashes: list[Crash], fail_on: str) -> list[Crash]:
    if fail_on == "never":
        return []
    if fail_on == "any":
        return list(crashes)
    return [c for c in crashes if not c.known]


# -- outputs -------------------------------------------------------------------------------


def markdown(crashes: list[Crash], fail_on: str, baseline: str | None) -> str:
    from triage.render import Painter, render_threads

    new = [c for c in crashes if not c.known]
    lines = ["## triage: crashes in this job", ""]
    if not crashes:
        return "\n".join([*lines, "No core files were left behind.", ""])
    against = f" against `{baseline}`" if baseline else " (no baseline: every crash is new)"
    lines += [
        f"{len(crashes)} core file(s): **{len(new)} new**, {len(crashes) - len(new)} known"
        f"{against}; failing on `{fail_on}`.",
        "",
        "| | test or core | signal | signature | top frame |",
        "|---|---|---|---|---|",
    ]
    for c in crashes:
        sig = c.signature
        top = sig.frames[0] if sig and sig.frames else ""
        signal = c.report.signal.name if c.report.signal else ""
        lines.append(
            f"| {'NEW' if not c.known else 'known'} | `{c.title}` | {signal} | "
            f"`{c.key}` | `{top}` |"
        )
    for c in crashes:
        stack = "\n".join(render_threads(c.report, Painter(False)))
        lines += [
            "",
            f"<details><summary>{'NEW' if not c.known else 'known'}: {c.title} "
            f"({c.summary})</summary>",
            "",
            "```",
            stack.strip() or c.summary,
            "```",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def junit(crashes: list[Crash], fail_on: str) -> bytes:
    failed = {id(c) for c in failing(crashes, fail_on)}
    suite = ET.Element(
        "testsuite",
        name="triage",
        tests=str(len(crashes)),
        failures=str(len(failed)),
        errors="0",
        skipped="0",
    )
    from triage.render import Painter, render_threads

    for c in crashes:
        case = ET.SubElement(
            suite, "testcase", classname="triage.crashes", name=c.title, file=c.path
        )
        stack = "\n".join(render_threads(c.report, Painter(False)))
        body = f"{c.summary}\ncore: {c.path}\nsignature: {c.key}\n\n{stack}"
        if id(c) in failed:
            kind = "new crash" if not c.known else "known crash"
            ET.SubElement(case, "failure", message=f"{kind}: {c.summary}", type=kind).text = body
        else:
            ET.SubElement(case, "system-out").text = body
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def to_json(crashes: list[Crash]) -> str:
    from triage.report import to_plain

    return json.dumps(
        {
            "crashes": [
                {
                    "core": c.path,
                    "test": c.report.test,
                    "known": c.known,
                    "signature_id": c.signature.id if c.signature else None,
                    "signature": c.summary,
                    "report": to_plain(c.report),
                }
                for c in crashes
            ]
        },
        indent=2,
    )


def print_crashes(
    crashes: list[Crash], stream: Any = sys.stdout, *, color: bool = False, native: bool = False
) -> None:
    """Each crash as `triage core` prints it (`native`: as with --native), and its verdict."""
    from triage.render import NativeView, render_text

    if not crashes:
        stream.write("triage: no core files were left behind\n")
        return
    for i, c in enumerate(crashes, 1):
        verdict = "known crash" if c.known else "NEW crash"
        test = f" in test {c.report.test}" if c.report.test else ""
        stream.write(f"=== {i}/{len(crashes)}: {verdict}{test}: {c.path}\n")
        stream.write(render_text(c.report, color=color, native=NativeView(shown=native)))
        stream.write(f"Signature {c.key}: {c.summary}\n\n")
