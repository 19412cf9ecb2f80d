"""Datasets of Parquet audio shards: schema v1, ingest, the demo dataset, verification
and the readers (Ray Data for training, a plain loop for tools and benchmarks)."""

from .demo import generate_clip, prepare_demo
from .epoch_clock import EpochClock
from .ingest_audioset import prepare_audioset
from .ingest_hf import prepare_hf
from .plain_reader import iter_numpy_batches
from .reader import read_split
from .sampling import SAMPLING_MODES, class_weights, rows_per_epoch
from .schema import DatasetError, DatasetInfo, LabelIndex, default_labels_path
from .summary import format_summary, print_summary, summarize
from .verify import VerifyReport, verify

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "EpochClock",
    "LabelIndex",
    "SAMPLING_MODES",
    "VerifyReport",
    "class_weights",
    "default_labels_path",
    "format_summary",
    "generate_clip",
    "iter_numpy_batches",
    "prepare_audioset",
    "prepare_demo",
    "prepare_hf",
    "print_summary",
    "read_split",
    "rows_per_epoch",
    "summarize",
    "verify",
]
