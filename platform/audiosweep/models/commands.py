"""`audiosweep models` (`audiosweep export` sits with `evaluate`: it may start from any checkpoint)."""

from __future__ import annotations

import argparse

from audiosweep.config import ConfigError


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
