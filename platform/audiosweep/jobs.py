"""Shared body of the thin `jobs/*.py` sweep entry points."""

from __future__ import annotations

import argparse

from audiosweep.cli import main


def sweep_job(default_space: str, argv: list[str]) -> int:
    """`audiosweep sweep <space> ...` where <space> is `--space X` if given, else the default."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--space", default=default_space)
    known, rest = parser.parse_known_args(argv)
    return main(["sweep", known.space, *rest])
