"""The run folder kept up to date as a trial reports (metrics, per-epoch files, the pointer to
its latest checkpoint).

Kept apart from `trainer.py`: Ray Train unpickles run callbacks in its controller, a fresh
process per trial that would otherwise import torch, timm and the models with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ray.train.v2.api.callback import UserCallback

from audiosweep.layout import CHECKPOINT_POINTER, METRICS_FILE, RUN_FILES_FROM_CHECKPOINT
from audiosweep.storage import Folder


class RunFolderCallback(UserCallback):
    """Writes each epoch's metrics (JSONL) and the small files of its checkpoint (per-class AP,
    DCLS positions, init report; the final weights after the last epoch) into the run folder
    (a local path or a URI, see `storage.py`) as soon as a report and its checkpoint are
    persisted."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def after_report(self, run_context, metrics, checkpoint) -> None:
        folder = Folder(self.run_dir)
        row = {k: _jsonable(v) for k, v in metrics[0].items()}
        folder.append_line(METRICS_FILE, json.dumps(row))
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            for name in RUN_FILES_FROM_CHECKPOINT:
                src = Path(directory) / name
                if src.is_file():
                    folder.upload(src, name)
        folder.write_text(CHECKPOINT_POINTER, checkpoint.path + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)
