"""A benchmark's raw results as CSV (`--csv PATH`), each row with the machine that measured it.

Every benchmark module turns its result into rows (`csv_rows`); this module adds the machine
columns and writes the file. The figures of one benchmark only compare within one machine and
one checkout, so every row says which: CPU model, ISA, logical cores, torch and Ray versions,
and the commit.
"""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

MACHINE_COLUMNS = ("cpu_model", "isa", "logical_cores", "torch_version", "ray_version", "commit")

# Widest first: a CPU with AVX-512 also lists AVX2, an SVE one also ASIMD (NEON).
_ISA_FLAGS = (
    ("avx512f", "avx512"),
    ("avx2", "avx2"),
    ("avx", "avx"),
    ("sse4_2", "sse4.2"),
    ("sve2", "sve2"),
    ("sve", "sve"),
    ("asimd", "neon"),
)


def isa_from_flags(flags: Iterable[str]) -> str:
    """The widest vector ISA among /proc/cpuinfo's `flags` (x86) or `Features` (Arm)."""
    have = set(flags)
    return next((name for flag, name in _ISA_FLAGS if flag in have), "")


def _cpuinfo(text: str) -> tuple[str, str]:
    """CPU model and ISA from the first processor of a /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: every core of a host is the same model
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("cpu model") or fields.get("hardware", "")
    return model, isa_from_flags((fields.get("flags") or fields.get("features", "")).split())


def _version(package: str) -> str:
    # From the installed metadata, not an import: importing Ray for a torch-only benchmark
    # would cost seconds.
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def git_commit(folder: Path) -> str:
    """HEAD of the checkout holding `folder`, with `-dirty` when tracked files differ from it;
    empty outside a checkout or without git."""
    # No optional locks: `git status` would otherwise refresh the index, racing whoever else
    # works in the checkout.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env=env,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if dirty else commit


@cache
def machine_facts() -> dict[str, str | int]:
    """The machine columns of every row: what a reader needs to tell two machines apart."""
    try:
        model, isa = _cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, isa = "", ""
    return {
        "cpu_model": model or platform.processor(),
        "isa": isa,
        "logical_cores": os.cpu_count() or 0,
        "torch_version": _version("torch"),
        "ray_version": _version("ray"),
        "commit": git_commit(Path(__file__).resolve().parent),
    }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        # Six significant digits: timings carry no more, and the file stays readable.
        return format(value, ".6g")
    if isinstance(value, (list, tuple)):
        # Per-repeat figures in one cell, so a row stays one variant.
        return " ".join(str(_cell(v)) for v in value)
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write `rows` plus the machine columns to `path`, atomically: a temporary file in the same
    folder, renamed over `path` once complete, so an interrupted run leaves the old file or
    none, never half a table. Columns: every row's keys in first-seen order, then the machine's;
    a row without a column leaves it empty."""
    path = Path(path)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    columns += [c for c in MACHINE_COLUMNS if c not in columns]
    machine = machine_facts()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp's file is private (0600); the CSV gets a new file's usual permissions.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(v) for k, v in {**machine, **row}.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
