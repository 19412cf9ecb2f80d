"""The `audiosweep` command.

Each stage of the data's path registers its own sub-commands (``register(sub)`` in
``<stage>/commands.py``), and the benchmarks theirs under ``bench`` (``bench/commands.py``);
heavy imports happen inside the handlers so that ``--help`` and argument errors answer
instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "audiosweep.data.commands",
    "audiosweep.audio.commands",
    "audiosweep.models.commands",
    "audiosweep.train.commands",
    "audiosweep.evaluate.commands",
    "audiosweep.sweep.commands",
    "audiosweep.bench.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiosweep",
        description="Ray-orchestrated sweeps for audio tagging (DSC vs DCLS on AudioSet-style data).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lacking: list[str] = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if missing == name:  # a stage this install leaves out
                continue
            if missing.split(".")[0] in ("audiosweep", ""):  # a real error inside the module
                raise
            # A stage whose dependency this install lacks (e.g. `bench dcls` on a stock PyTorch
            # image, without soundfile): the other stages still run.
            lacking.append(f"{name.rsplit('.', 2)[-2]} (needs {missing})")
            continue
        module.register(sub)
    if lacking:
        parser.epilog = "Not available in this install: " + ", ".join(lacking) + "."
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Dotted overrides may come after options (`sweep grid --preset demo train.epochs=3`),
    # where argparse no longer assigns them to the positional list.
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if extra != overrides or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    from audiosweep.errors import UserError

    try:
        return int(args.func(args) or 0)
    except UserError as err:
        # A mistake the user can fix: one line naming it and the fix, no traceback.
        print(f"error: {err.one_line()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
