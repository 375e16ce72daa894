"""The one catalogue of error kinds and sweep statuses (docs/errors.md says what each means).

`CoreErrorKind`: what `triage core` (`analyze_core`) puts in a report's `error.kind`.
`SweepErrorKind`: what a sweep adds, where the analysis could not run or finish (fetching
the object, the analysis child, Dask). `ErrorKind`: either (`ErrorInfo.kind`: a dataset
row's report carries the sweep's). `SweepStatus`: a dataset row's status, "ok" or its error
kind. tests/test_kinds.py collects every kind the code emits and holds it to this catalogue
and to the documentation.
"""

from __future__ import annotations

from typing import Literal, get_args

CoreErrorKind = Literal[
    # the core file
    "file_not_found",
    "permission_denied",
    "symlink_loop",
    "is_a_directory",
    "not_a_regular_file",
    "unreadable",
    "empty_file",
    "not_elf",
    "not_core",
    "unsupported_architecture",
    "corrupt_notes",
    "truncated_core",
    "decompression_failed",
    "core_too_large",
    "insufficient_space",
    # the executable
    "executable_not_found",
    "executable_unreadable",
    "executable_not_elf",
    "wrong_executable",
    # the interpreter
    "python_binary_not_found",
    "not_python",
    "unknown_python_version",
    "unsupported_python_version",
    "interpreter_not_found",
    # the process's memory, where a reader could not go on without it
    "unmapped_address",
    "unexpected_object",
    # triage itself
    "internal_error",
]

SweepErrorKind = Literal[
    # the object in its source
    "not_found",
    "vanished",
    "unreachable",
    "changed",
    # the analysis child and the cluster
    "timeout",
    "memory_limit",
    "analysis_crashed",
    "worker_lost",
    "task_error",
]

ErrorKind = Literal[CoreErrorKind, SweepErrorKind]

SweepStatus = Literal["ok", ErrorKind]

ERROR_KINDS: frozenset[str] = frozenset(get_args(ErrorKind))
SWEEP_STATUSES: frozenset[str] = frozenset(get_args(SweepStatus))
