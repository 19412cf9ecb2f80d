"""`audiosweep models` and `audiosweep export`."""

from __future__ import annotations

import argparse
import json
import sys

from audiosweep.config import ConfigError
from audiosweep.errors import CheckpointError


def register(sub) -> None:
    models = sub.add_parser(
        "models", help="table of every architecture x conv with parameter and DCLS position counts"
    )
    models.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes for every model (default: each architecture's own, 527 for AudioSet backbones)",
    )
    models.add_argument(
        "--arch", default="*", help="shell-style pattern of architectures (default: all)"
    )
    models.set_defaults(func=_models)

    export = sub.add_parser(
        "export",
        help="fold SP4ASC's batch norms and save it in float16; --torch: bake DCLS layers",
    )
    source = export.add_mutually_exclusive_group()
    source.add_argument(
        "--run",
        default=None,
        help="a finished `audiosweep train` run folder: its config and final weights",
    )
    source.add_argument(
        "--checkpoint", default=None, help="state dict to load (.safetensors or torch file)"
    )
    export.add_argument(
        "--out",
        default=None,
        help="output .safetensors path (default with --run: <run>/model_fp16.safetensors)",
    )
    export.add_argument(
        "--conv", default="dsc", help="SP4ASC conv type of the checkpoint (default dsc)"
    )
    export.add_argument("--num-classes", type=int, default=None, help="classes (default 10)")
    export.add_argument("--n-mels", type=int, default=None, help="mel bins (default: SP4ASC's)")
    export.add_argument(
        "--torch",
        default=None,
        metavar="OUT",
        help="with --run, any model: write its weights with every DCLS layer baked into a plain "
        "depthwise conv (safetensors; loads into the DSC architecture without dcls)",
    )
    export.add_argument("--ema", action="store_true", help="with --torch: the EMA weights")
    export.set_defaults(func=_export)


def _models(args: argparse.Namespace) -> int:
    from audiosweep.models.dcls_substitution import count_dcls_positions
    from audiosweep.models.factory import count_parameters, create_model, get_arch, list_archs

    archs = list_archs(args.arch)
    if not archs:
        raise ConfigError(
            f"no architecture matches {args.arch!r}; `audiosweep models` without --arch lists them"
        )
    print(
        f"{'arch':16s} {'conv':14s} {'classes':>7s} {'parameters':>12s} {'dcls P+SIG':>11s}  notes"
    )
    for arch in archs:
        spec = get_arch(arch)
        for conv in spec.conv_types:
            model = create_model(arch, conv, num_classes=args.num_classes)
            classes = spec.num_classes if args.num_classes is None else args.num_classes
            note = "; ".join(filter(None, [spec.description, _notes(arch, model)]))
            print(
                f"{arch:16s} {conv:14s} {classes:7d} {count_parameters(model):12,d} "
                f"{count_dcls_positions(model):11,d}  {note}"
            )
    return 0


def _notes(arch: str, model) -> str:
    if arch != "sp4asc":
        return ""
    from audiosweep.models.batchnorm_fold import fold_batchnorm
    from audiosweep.models.factory import count_parameters
    from audiosweep.models.sp4asc import report_parameter_count

    return (
        f"report count {report_parameter_count(model):,d} (with BN statistics), "
        f"folded {count_parameters(fold_batchnorm(model)):,d}"
    )


def _export(args: argparse.Namespace) -> int:
    from audiosweep.models.export import export_folded_fp16
    from audiosweep.models.export_run import ExportError, export_run
    from audiosweep.models.factory import create_model

    if args.torch:
        if not args.run:
            raise ExportError("export --torch bakes a run: pass --run RUN")
        from audiosweep.models.bake import export_baked

        print(json.dumps(export_baked(args.run, args.torch, ema=args.ema), indent=2))
        return 0
    if args.run:
        info = export_run(args.run, args.out)
        print(json.dumps(info, indent=2))
        if not info["within_limit"]:
            print(
                f"warning: {info['bytes']:,} bytes exceed the {info['limit_bytes']:,}-byte (128 KB) "
                "limit",
                file=sys.stderr,
            )
        return 0
    if not args.out:
        raise ExportError("export needs --out (or --run, which defaults it)")

    options = {} if args.n_mels is None else {"n_mels": args.n_mels}
    model = create_model("sp4asc", args.conv, num_classes=args.num_classes, **options)
    if args.checkpoint:
        state = _load_state_dict(args.checkpoint)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(
                f"{args.checkpoint} does not fit sp4asc/{args.conv}: {error}"
            ) from error
    info = export_folded_fp16(model.eval(), args.out)
    print(json.dumps(info, indent=2))
    return 0


def _load_state_dict(path: str) -> dict:
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints commonly wrap the weights.
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state
