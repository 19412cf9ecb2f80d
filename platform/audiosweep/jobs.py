"""Shared body of the thin `jobs/*.py` sweep entry points."""

from __future__ import annotations

from audiosweep.cli import main


def sweep_job(default_space: str, argv: list[str]) -> int:
    """`audiosweep sweep <space> ...` where <space> is `--space X` if given, else the default."""
    argv = list(argv)
    space = default_space
    if "--space" in argv:
        i = argv.index("--space")
        if i + 1 >= len(argv):
            raise SystemExit("--space needs a search space name")
        space = argv[i + 1]
        del argv[i : i + 2]
    return main(["sweep", space, *argv])
