"""Where every file of a run and of a sweep lives under the run root.

    <run root>/                              a path every node sees, or a URI (storage.py)
      <trial name>/                          one `audiosweep train` run (TrialLayout)
        config.yaml  metrics.jsonl  per_class_ap.csv  final_checkpoint.txt
        model.safetensors  model_ema.safetensors  dcls_positions.safetensors  init_report.json
        checkpoint_<time>/                   Ray Train's checkpoints
          state.pt  per_class_ap.csv  dcls_positions.safetensors  init_report.json
          model.safetensors  model_ema.safetensors            (after the last epoch)
      sweeps/<sweep id>/                     one sweep (SweepLayout)
        tune/                                Tune's experiment state (what --resume reads)
        trials/                              a run root of its own: one TrialLayout per trial
        report/                              report.md, report.csv, report.png

Every module that reads or writes one of these names it through this module, so the layout is
stated once. A layout only names locations; `storage.Folder` reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiosweep.storage import Folder, join, name_of, resolve_root

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
PER_CLASS_AP_FILE = "per_class_ap.csv"
CHECKPOINT_POINTER = "final_checkpoint.txt"  # the path of the checkpoint the run ended with
STATE_FILE = "state.pt"
MODEL_FILE = "model.safetensors"
MODEL_EMA_FILE = "model_ema.safetensors"  # the final EMA weights, when train.ema_decay is set
# The DCLS kernel positions as initialised and as learned (`init/<param>`, `final/<param>`):
# small, so the driver reads them without loading a whole training state.
POSITIONS_FILE = "dcls_positions.safetensors"
INIT_REPORT_FILE = "init_report.json"  # which initial weights loaded, skipped, stayed fresh

# Copied from each checkpoint into the run folder as soon as Ray has persisted it.
RUN_FILES_FROM_CHECKPOINT = (
    PER_CLASS_AP_FILE,
    MODEL_FILE,
    MODEL_EMA_FILE,
    POSITIONS_FILE,
    INIT_REPORT_FILE,
)
# What a finished trial logs to MLflow as artifacts, from its run folder.
TRACKED_RUN_FILES = (
    CONFIG_FILE,
    METRICS_FILE,
    PER_CLASS_AP_FILE,
    CHECKPOINT_POINTER,
    INIT_REPORT_FILE,
)

# An evaluation's output folder (`audiosweep evaluate --out`): its config and per-class AP
# files are named as in a run folder.
EVALUATION_FILE = "metrics.json"  # one evaluation's metrics and what it scored
SCORES_FILE = "scores.npz"  # per-clip scores (--save-scores)

SWEEPS_DIR = "sweeps"
TUNE_DIR = "tune"
TRIALS_DIR = "trials"
REPORT_DIR = "report"


@dataclass(frozen=True)
class TrialLayout:
    """One trial's run folder: `<run root>/<name>`; Ray Train's checkpoints go inside it."""

    root: str
    name: str

    @property
    def dir(self) -> str:
        return join(self.root, self.name)

    @property
    def folder(self) -> Folder:
        return Folder(self.dir)


@dataclass(frozen=True)
class SweepLayout:
    """One sweep's folder: `<run root>/sweeps/<sweep id>`."""

    dir: str

    @property
    def sweep_id(self) -> str:
        return name_of(self.dir)

    @property
    def tune_dir(self) -> str:
        return join(self.dir, TUNE_DIR)

    @property
    def trials(self) -> RunLayout:
        return RunLayout(join(self.dir, TRIALS_DIR))

    @property
    def report_dir(self) -> str:
        return join(self.dir, REPORT_DIR)


@dataclass(frozen=True)
class RunLayout:
    """A run root: an absolute local path or a URI (`RunLayout.at` resolves what a user gave)."""

    root: str

    @classmethod
    def at(cls, location: str) -> RunLayout:
        return cls(resolve_root(location))

    def trial(self, name: str) -> TrialLayout:
        return TrialLayout(self.root, name)

    def sweep(self, sweep_id: str) -> SweepLayout:
        return SweepLayout(join(self.root, SWEEPS_DIR, sweep_id))

    def sweep_ids(self) -> list[str]:
        """The sweeps under this root, oldest name first."""
        return sorted(Folder(join(self.root, SWEEPS_DIR)).subfolders())
