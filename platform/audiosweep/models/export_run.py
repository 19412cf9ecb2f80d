"""Export the model a training run ended with: its config rebuilds the model, its final weights
fill it, and `export_folded_fp16` folds the batch norms and stores float16."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audiosweep.errors import ExportError

# DCASE 2021 task 1a's model size limit: 128 KB (KiB), 65,536 float16 parameters.
SIZE_LIMIT_BYTES = 128 * 1024
EXPORT_NAME = "model_fp16.safetensors"


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fold and save the final model of ``run_dir`` (default ``<run_dir>/model_fp16.safetensors``);
    returns the export info plus ``within_limit`` (the file fits in 128 KB)."""
    import yaml
    from safetensors.torch import load_file

    from audiosweep.config import ConfigError, TrialConfig
    from audiosweep.layout import CONFIG_FILE, MODEL_FILE
    from audiosweep.models.export import export_folded_fp16
    from audiosweep.models.from_config import create_model_from_config

    run = Path(run_dir)
    config, weights = run / CONFIG_FILE, run / MODEL_FILE
    for path, what in ((config, "resolved config"), (weights, "final weights")):
        if not path.is_file():
            raise ExportError(
                f"{run} has no {path.name} ({what}); export a finished `audiosweep train` run"
            )
    try:
        cfg = TrialConfig.from_dict(yaml.safe_load(config.read_text()))
    except (yaml.YAMLError, ConfigError) as err:
        raise ExportError(f"{config}: not a trial config ({err})") from None
    if cfg.model.arch != "sp4asc":
        raise ExportError(
            f"{run} trained {cfg.model.arch}; float16 export with folded batch norms is for sp4asc"
        )
    state = load_file(str(weights))
    head = [k for k in state if k.startswith("head.") and k.endswith(".weight")]
    num_classes = int(state[sorted(head)[-1]].shape[0]) if head else 10
    model = create_model_from_config(cfg, num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ExportError(
            f"{weights} does not fit {cfg.case}: {str(err).splitlines()[0]}"
        ) from None
    info = export_folded_fp16(model.eval(), Path(out) if out else run / EXPORT_NAME)
    info["within_limit"] = info["bytes"] <= SIZE_LIMIT_BYTES
    info["limit_bytes"] = SIZE_LIMIT_BYTES
    return info
