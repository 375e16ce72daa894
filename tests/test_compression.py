"""Compressed cores: gzip, zstd, xz and lz4 give the very report of the plain core, the format is
recognised by content (not by name), and no temporary file is ever left behind."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import triage_env
from corefactory import COMPRESSION_SUFFIXES, CoreCase, compress

FORMATS = list(COMPRESSION_SUFFIXES)
# Fields that describe the file as given rather than the process; everything else must match.
FILE_FIELDS = ("path", "size", "compression")


@pytest.fixture(scope="module")
def plain(cores, preferred_interp) -> CoreCase:
    """A kernel core (SIGSEGV, 3 threads): every section of the report has content."""
    return cores.crash(preferred_interp, "segv")


@pytest.fixture(scope="module")
def compressed(plain: CoreCase, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("compressed")
    yield {
        fmt: compress(plain.path, fmt, directory / ("core" + COMPRESSION_SUFFIXES[fmt]))
        for fmt in FORMATS
    }
    shutil.rmtree(directory, ignore_errors=True)


def comparable(report: dict) -> dict:
    """The report without what depends on the file as given or on timing."""
    report = json.loads(json.dumps(report))
    for name in FILE_FIELDS:
        del report["core"][name]
    report.pop("analysis_seconds", None)
    return report


def assert_one_error_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("triage: error: ")


def test_plain_core_is_uncompressed(plain: CoreCase, triage_json) -> None:
    report = triage_json(plain.path)
    size = os.path.getsize(plain.path)
    assert report["core"] == {
        "path": plain.path,
        "size": size,
        "compression": "none",
        "uncompressed_size": size,
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_compressed_core_gives_same_report(plain: CoreCase, compressed, triage_json, fmt) -> None:
    path = compressed[fmt]
    report = triage_json(path)
    assert report["core"] == {
        "path": path,
        "size": os.path.getsize(path),
        "compression": fmt,
        "uncompressed_size": os.path.getsize(plain.path),
    }
    assert comparable(report) == comparable(triage_json(plain.path))
    # and it is still the crash it was
    assert report["signal"]["fault_address"] == plain.fault_address == 0x75BCD15
    assert report["process"]["pid"] == plain.pid


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("gzip", "core.zst"), ("zstd", "core.gz"), ("xz", "core"), ("lz4", "core.xz")],
)
def test_format_is_detected_by_content(plain, compressed, triage_json, tmp_path, fmt, name) -> None:
    misnamed = tmp_path / name
    shutil.copyfile(compressed[fmt], misnamed)
    report = triage_json(misnamed)
    assert report["core"]["compression"] == fmt
    assert comparable(report) == comparable(triage_json(plain.path))


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_temporary_file_after_success(compressed, run_triage, tmp_path, fmt) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    rc, out, err = run_triage("core", compressed[fmt], env={"TMPDIR": str(tmpdir)})
    assert rc == 0, err
    assert "The process died due a segmentation fault accessing address: 0x75bcd15" in out
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archive_is_one_error(compressed, run_triage, tmp_path, fmt) -> None:
    data = Path(compressed[fmt]).read_bytes()
    half = len(data) // 2
    truncated = tmp_path / ("core" + COMPRESSION_SUFFIXES[fmt])
    truncated.write_bytes(data[:half])
    del data
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}

    rc, out, err = run_triage("core", truncated, env=env)
    assert rc == 1
    assert_one_error_line(err)
    assert "Traceback" not in out
    assert str(truncated) in err

    rc, out, err = run_triage("core", truncated, "--format", "json", env=env)
    assert rc == 1
    assert_one_error_line(err)
    report = json.loads(out)
    assert report["error"]["kind"] == "decompression_failed"
    assert list(tmpdir.iterdir()) == []
    # The report still describes the file as given.
    assert report["core"]["path"] == str(truncated)
    assert report["core"]["size"] == half
    assert report["core"]["compression"] == fmt


def _large_xz_core(plain: CoreCase, path: Path, zeros_mib: int = 768) -> None:
    """xz of the core followed by `zeros_mib` MiB of zeros (concatenated xz streams): a valid
    core whose decompression takes a second or more."""
    chunk = lzma.compress(bytes(64 << 20), preset=0)
    with open(path, "wb") as out:
        out.write(lzma.compress(Path(plain.path).read_bytes(), preset=0))
        for _ in range(zeros_mib // 64):
            out.write(chunk)


def _fds_under(pid: int, directory: str) -> list[str]:
    found = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(directory + os.sep):
                found.append(target)
    except OSError:
        pass
    return found


def test_no_temporary_file_after_interrupt(plain: CoreCase, tmp_path) -> None:
    big = tmp_path / "big-core.xz"
    _large_xz_core(plain, big)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "triage", "core", str(big), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=triage_env({"TMPDIR": str(tmpdir)}),
    )
    try:
        # Interrupt once the decompressed copy is being written (an open file under TMPDIR).
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while proc.poll() is None and time.monotonic() < deadline and not seen:
            seen = _fds_under(proc.pid, str(tmpdir))
            time.sleep(0.002)
        assert seen, f"triage finished (exit {proc.poll()}) before its temporary file was seen"
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1, err
    assert list(tmpdir.iterdir()) == []


def test_zstd_of_several_frames_and_a_skippable_frame(plain, triage_json, tmp_path) -> None:
    """A .zst of several frames (zstd -d concatenates them) with a skippable frame between
    (metadata some tools add) is one core; the frame walk that detects truncation must
    accept it."""
    import zstandard

    data = Path(plain.path).read_bytes()
    half = len(data) // 2
    skippable = (0x184D2A5E).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    joined = tmp_path / "frames.zst"
    with open(joined, "wb") as out:
        out.write(zstandard.ZstdCompressor(level=1).compress(data[:half]))
        out.write(skippable)
        out.write(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(data[half:]))
    del data
    report = triage_json(str(joined))
    assert report["error"] is None
    assert report["core"]["compression"] == "zstd"
    assert comparable(report) == comparable(triage_json(plain.path))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("limit", [64 << 20, 1 << 20], ids=["in-memory", "spilled-to-file"])
def test_decompressed_bytes_are_the_core(plain: CoreCase, compressed, fmt, limit) -> None:
    """A core decompresses into anonymous memory when it fits the limit; a bigger one fills
    the region, then continues into a temporary file. Both hold the core, byte for byte."""
    import mmap

    from triage.coredump.source import decompress_to_map, decompressor

    original = Path(plain.path).read_bytes()
    assert (1 << 20) < len(original) < (64 << 20)
    with open(compressed[fmt], "rb") as f, decompressor(f, fmt) as src:
        data = decompress_to_map(src, limit)
    assert isinstance(data, mmap.mmap)
    try:
        assert len(data) == len(original)
        assert data[:] == original
    finally:
        data.close()


def test_empty_archive_decompresses_to_nothing(tmp_path) -> None:
    from triage.coredump.source import decompress_to_map, decompressor

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    archive = compress(empty, "zstd", tmp_path / "empty.zst")
    for limit in (64 << 20, 0):
        with open(archive, "rb") as f, decompressor(f, "zstd") as src:
            assert decompress_to_map(src, limit) is None
