"""`audiosweep export`: a trained model in a form that runs without the platform.

- ``--onnx OUT.onnx`` (``--run RUN`` or ``--model M`` as `tag` takes it): front end + model with
  DCLS baked + activation as one ONNX graph, checked in onnxruntime before it is kept;
- ``--torch OUT`` (``--run``): the weights with DCLS baked, loadable without `dcls`;
- ``--run RUN`` / ``--checkpoint``: SP4ASC with folded batch norms in float16 (DCASE's format).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from audiosweep.errors import CheckpointError, ExportError

SOURCES = ("dcls-audio", "fb-convnext", "timm", "sail-metaformer", "apple-fastvit")
EXAMPLE_CLIPS = 2


def register_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="--onnx: one ONNX graph (DCLS baked); --torch: baked weights; else SP4ASC in fp16",
        description=(
            "Export a trained model. --onnx OUT.onnx writes the front end, the model with every "
            "DCLS layer baked into a plain depthwise convolution and the activation as one "
            "graph (waveform in, logits and probabilities out; dynamic batch and length), "
            "checked in onnxruntime against torch. --torch OUT writes the baked weights "
            "(safetensors, no dcls needed to load). Without either: SP4ASC with folded batch "
            "norms in float16."
        ),
    )
    export.add_argument("overrides", nargs="*", help="dotted overrides (with --model/--preset)")
    source = export.add_mutually_exclusive_group()
    source.add_argument(
        "--run",
        default=None,
        help="a finished `audiosweep train` run folder: its config and final weights",
    )
    source.add_argument(
        "--model", default=None, help="with --onnx: run folder, models:/<id>, file or URL"
    )
    source.add_argument(
        "--checkpoint", default=None, help="SP4ASC state dict to fold (.safetensors or torch file)"
    )
    export.add_argument(
        "--onnx", default=None, metavar="OUT", help="write one ONNX graph, waveform to scores"
    )
    export.add_argument(
        "--example",
        default=None,
        help="with --onnx: audio file the export is checked on (default: the first clips of "
        "the run's eval split, else a synthetic signal)",
    )
    export.add_argument("--source", choices=SOURCES, help="with --model: a reference layout")
    export.add_argument("--preset", help="with --model: preset of a checkpoint without config")
    export.add_argument("--labels", help="label index CSV for the class names in the graph")
    export.add_argument(
        "--torch",
        default=None,
        metavar="OUT",
        help="with --run, any model: write its weights with every DCLS layer baked into a plain "
        "depthwise conv (safetensors; loads into the DSC architecture without dcls)",
    )
    export.add_argument("--ema", action="store_true", help="the EMA weights (--onnx, --torch)")
    export.add_argument(
        "--out",
        default=None,
        help="SP4ASC fp16 output path (default with --run: <run>/model_fp16.safetensors)",
    )
    export.add_argument("--conv", default="dsc", help="SP4ASC conv type of --checkpoint")
    export.add_argument("--num-classes", type=int, default=None, help="classes (default 10)")
    export.add_argument("--n-mels", type=int, default=None, help="mel bins (default: SP4ASC's)")
    export.add_argument("--tracking-uri", help="MLflow server of a models:/ model")
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    if args.onnx:
        return _export_onnx(args)
    if args.model:
        raise ExportError("--model applies to --onnx; for the other exports pass --run RUN")
    if args.torch:
        if not args.run:
            raise ExportError("export --torch bakes a run: pass --run RUN")
        from audiosweep.models.bake import export_baked

        print(json.dumps(export_baked(args.run, args.torch, ema=args.ema), indent=2))
        return 0
    return _export_sp4asc(args)


def _export_onnx(args: argparse.Namespace) -> int:
    import torch

    from audiosweep.evaluate.trained import load_trained
    from audiosweep.models.onnx_export import export_onnx
    from audiosweep.train.recipe import build_inputs
    from audiosweep.train.task import task_for

    location = args.model or args.run
    if not location:
        raise ExportError("export --onnx needs the model: --run RUN or --model M")
    if Path(args.onnx).suffix.lower() != ".onnx":
        raise ExportError(f"--onnx {args.onnx}: name a .onnx file")
    trained = load_trained(
        location,
        source=args.source,
        preset=args.preset,
        # Baking reads the fast DCLS layer's kernel; both layers hold the same state dict.
        overrides=[*args.overrides, "model.dcls_impl=fast"],
        ema=args.ema,
        labels=args.labels,
        tracking_uri=args.tracking_uri,
    )
    cfg = trained.cfg
    activation = task_for(cfg).activation
    frontend = build_inputs(cfg, device=torch.device("cpu"), activation=activation).frontend
    example, what = example_input(cfg, args.example)
    print(f"exporting {cfg.case}; checking on {what}", file=sys.stderr)
    info = export_onnx(
        trained.model,
        frontend,
        args.onnx,
        torch.from_numpy(example),
        activation=activation,
        sample_rate=cfg.audio.sample_rate,
        clip_samples=cfg.clip_samples(),
        class_names=trained.class_names,
    )
    info["check"]["example"] = what
    print(json.dumps(info, indent=2))
    return 0


def example_input(cfg, path: str | None) -> tuple[np.ndarray, str]:
    """(clips, samples) float32 waveforms to check an export on, and what they are."""
    from audiosweep.config import resolve_path
    from audiosweep.data import audio_io
    from audiosweep.data.schema import MANIFEST_NAME

    window = cfg.clip_samples()
    if path is not None:
        data, rate = audio_io.decode(path)
        wave = audio_io.resample(audio_io.to_mono(data), rate, cfg.audio.sample_rate)
        clip = np.zeros((1, window), np.float32)
        clip[0, : min(window, len(wave))] = wave[:window]
        return clip, f"{path} (first {window / cfg.audio.sample_rate:g} s)"
    data = Path(resolve_path(cfg.data.path))
    if (data / MANIFEST_NAME).is_file():
        from audiosweep.data.plain_reader import iter_numpy_batches

        batch = next(
            iter_numpy_batches(
                data,
                cfg.data.eval_split,
                batch_size=EXAMPLE_CLIPS,
                clip_seconds=cfg.data.clip_seconds,
            ),
            None,
        )
        if batch is not None:
            ids = ", ".join(str(c) for c in batch["clip_id"])
            return batch["waveform"].astype(np.float32), f"clips {ids} of {data}"
    # No recording at hand: a chirp over the band the front end sees, plus noise.
    rate = cfg.audio.sample_rate
    t = np.arange(window) / rate
    f_hi = min(cfg.audio.f_max or rate / 2, rate / 2)
    sweep = np.sin(2 * np.pi * (50 * t + (f_hi - 50) * t**2 / (2 * t[-1])))
    noise = np.random.default_rng(0).standard_normal(window)
    wave = (0.3 * sweep + 0.05 * noise).astype(np.float32)[None]
    return wave, "a synthetic chirp (pass --example FILE to check on a recording)"


def _export_sp4asc(args: argparse.Namespace) -> int:
    from audiosweep.models.export import export_folded_fp16
    from audiosweep.models.export_run import export_run
    from audiosweep.models.factory import create_model

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
        raise ExportError("export needs --out (or --run, which defaults it), --onnx or --torch")
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
