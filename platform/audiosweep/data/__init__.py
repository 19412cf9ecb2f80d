"""Datasets of Parquet audio shards: schema v1, ingest, the demo dataset, verification
and the readers (Ray Data for training, a plain loop for tools and benchmarks)."""

from .demo import generate_clip, prepare_demo
from .ingest_audioset import prepare_audioset
from .ingest_hf import prepare_hf
from .plain_reader import iter_numpy_batches
from .reader import read_split
from .schema import DatasetError, DatasetInfo, LabelIndex, default_labels_path
from .summary import format_summary, print_summary, summarize
from .verify import VerifyReport, verify

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "LabelIndex",
    "VerifyReport",
    "default_labels_path",
    "format_summary",
    "generate_clip",
    "iter_numpy_batches",
    "prepare_audioset",
    "prepare_demo",
    "prepare_hf",
    "print_summary",
    "read_split",
    "summarize",
    "verify",
]
