"""Typed trial configuration: YAML presets plus dotted command-line overrides.

A trial is fully described by a `TrialConfig`. Presets live in ``search_spaces/presets/*.yaml``
and hold only the values that differ from these defaults (the defaults are the paper's
recipe, Appendix A of Khalfaoui-Hassani et al. 2023). Overrides such as ``optim.lr=1e-3`` are
parsed as YAML scalars and type-checked, so a typo fails before any cluster work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from audiosweep.errors import ConfigError

# Allowed values, checked when a config is loaded (a typo fails before any cluster work).
Conv = Literal["dsc", "dcls_gauss", "dcls_bilinear", "dcls_triangle"]
DclsImpl = Literal["fast", "reference"]
OptimName = Literal["adamw", "lamb"]
Amp = Literal["auto", "none", "bf16", "fp16"]
LossName = Literal["bce", "focal", "focal_softmax", "ce"]
Sampling = Literal["uniform", "balanced"]
# multilabel: sigmoid scores, mAP/d'; singlelabel: softmax, accuracy and log loss.
# auto: the dataset manifest's task (datasets without one are multi-label).
TaskName = Literal["auto", "multilabel", "singlelabel"]


@dataclass
class DataConfig:
    path: str = "data/demo"
    # The command that makes `path`, named in the error when the dataset is missing.
    prepare: str | None = None
    train_split: str = "train"
    eval_split: str = "eval"
    # A split for model selection (`prepare --val-fraction`, `audiosweep split`): when set,
    # best_map, ASHA and Optuna read it and the eval split only scores (null: eval decides).
    val_split: str | None = None
    clip_seconds: float | None = None  # None: the dataset manifest's clip length
    shuffle_buffer: int = 256  # Ray Data local shuffle buffer (rows) for training
    # Rows each read task draws from many row groups and emits in one random order, before
    # decoding (cheap: compressed audio); see data/planned_source.py. Larger windows mean
    # fewer tasks per epoch, each reading all its rows before its first block (512
    # was no faster on 5,000 2 s clips and slower on 1,000 10 s clips).
    mix_rows: int = 256
    # CPU reserved by each Ray Data read/decode task; keep it below the CPUs the Train workers
    # leave free, or reading waits forever (small machines: a fraction).
    read_cpus: float = 1.0
    # Train split per epoch: uniform (every clip once, or samples_per_epoch uniform draws) |
    # balanced (PaSST class-balanced draws with replacement; an ablation, not the paper's recipe).
    sampling: Sampling = "uniform"
    samples_per_epoch: int | None = None  # None: the train split's rows
    task: TaskName = "auto"

    def __post_init__(self) -> None:
        if self.mix_rows < 1:
            raise ConfigError(f"data.mix_rows must be >= 1, not {self.mix_rows}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ConfigError(
                f"data.samples_per_epoch must be >= 1 or null, not {self.samples_per_epoch}"
            )


# Mean and std of the log-mel dB values of AudioSet (balanced train), as published with the paper.
AUDIOSET_MEAN = -18.2696
AUDIOSET_STD = 30.5735


@dataclass
class AudioConfig:
    """The log-mel front end (`audio.frontend.FrontEnd` takes this section as it is)."""

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    win_length: int | None = None  # None: n_fft
    n_mels: int = 128
    f_min: float = 50.0
    f_max: float = 14000.0
    top_db: float | None = None
    # AudioSet statistics of the reference implementation; `audiosweep stats` computes yours.
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD

    def __post_init__(self) -> None:
        if self.std <= 0:
            raise ConfigError(f"audio.std must be > 0, got {self.std}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError(
                f"need 0 <= audio.f_min < audio.f_max <= audio.sample_rate/2; got "
                f"f_min={self.f_min}, f_max={self.f_max}, sample_rate={self.sample_rate}"
            )
        win = self.win_length or self.n_fft
        if not 0 < win <= self.n_fft or self.hop_length <= 0:
            raise ConfigError(
                f"need 0 < audio.win_length <= audio.n_fft and audio.hop_length > 0; got "
                f"win_length={win}, n_fft={self.n_fft}, hop_length={self.hop_length}"
            )

    def num_frames(self, num_samples: int) -> int:
        """Frames the front end produces for ``num_samples`` (centred STFT)."""
        return num_samples // self.hop_length + 1


@dataclass
class AugmentConfig:
    roll: bool = True
    speed_p: float = 0.5
    speed_min: float = 0.5
    speed_max: float = 1.5
    erasing_p: float = 0.25
    mixup_alpha: float = 0.8  # 0 disables mixup
    label_smoothing: float = 0.1
    specaugment: bool = False
    time_masks: int = 2
    time_mask_width: int = 128
    freq_masks: int = 2
    freq_mask_width: int = 32
    # Set: frequency masks of at most round(fraction * audio.n_mels) bins instead of
    # freq_mask_width (SP4ASC's dF = 32 of 256 bins is 0.125), for spaces shared by presets
    # with different mel resolutions.
    freq_mask_fraction: float | None = None
    # >0: the final evaluation also averages the predictions of this many SpecAugment draws
    # (SP4ASC: 30), reported as eval_*_tta beside the plain eval_*.
    tta_views: int = 0


@dataclass
class ModelConfig:
    arch: str = "convnext_tiny"
    conv: Conv = "dsc"
    dilated_kernel_size: int = 23
    kernel_count: int = 26
    drop_path_rate: float = 0.4
    dcls_impl: DclsImpl = "fast"
    # Initial weights: "random", "imagenet" (the paper's ImageNet-1k checkpoint for the case,
    # downloaded once into $AUDIOSWEEP_CACHE), or a local path or URL of a checkpoint.
    init: str = "random"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: OptimName = "adamw"
    lr: float | None = None  # None: base_lr * effective_batch / lr_reference_batch
    base_lr: float = 4e-3
    lr_reference_batch: int = 4096
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    position_lr_scale: float = 5.0
    warmup_epochs: float = 20.0
    min_lr: float = 1e-6
    clip_grad: float | None = None


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32  # per worker and per step
    effective_batch: int | None = None  # None: batch_size * num_workers (no accumulation)
    eval_batch_size: int = 64
    num_workers: int = 2
    cpus_per_worker: float = 0.5
    # None: one GPU per worker when the cluster has GPUs, else CPU (NCCL/CUDA vs gloo/CPU).
    gpus_per_worker: float | None = None
    amp: Amp = "auto"  # auto: fp16 on CUDA, off on CPU; fp16 needs CUDA
    loss: LossName = "bce"
    focal_gamma: float = 1.0
    seed: int = 0
    max_failures: int = 2
    keep_checkpoints: int = 2
    throughput_warmup_steps: int = 3
    # Exponential moving average of the weights, updated after every optimizer step (timm's
    # ModelEmaV3); None: off, as in the paper's recipe. On: each epoch also evaluates the
    # average (eval_map_ema), and checkpoints hold it.
    ema_decay: float | None = None
    # One worker only: run the worker loop in the trial's own process instead of in Ray Train's
    # controller and worker actors (`train/in_process.py`): the same loop, data, checkpoints,
    # resumption and retries, without the actors' start-up (most of a 2-core demo trial's
    # fixed cost, docs/BENCHMARKS.md).
    in_process: bool = False

    def __post_init__(self) -> None:
        if self.in_process and self.num_workers != 1:
            raise ConfigError(
                f"train.in_process runs one worker, but train.num_workers is {self.num_workers}: "
                "set train.num_workers=1 or train.in_process=false"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in (0, 1) or null, not {self.ema_decay}")


@dataclass
class BenchConfig:
    """The sweep's controlled throughput measurement (`sweep/throughput.py`): every case's
    model side by side once the trials are done, at this batch and the preset's clip shape."""

    batch: int = 8
    repeats: int = 7  # interleaved rounds; figures are medians over them
    frames: int | None = None  # None: the frames of the preset's clips (10 s at hop 320: 1001)
    dtype: str = "float32"
    threads: int | None = None  # CPU threads; None: a trial worker's (train.cpus_per_worker)
    # Each timing runs batches back to back for at least this long (0: one batch): steadier
    # wall times on a loaded machine. One-thread CPU runs time CPU time, which needs none.
    min_sample_s: float = 0.0

    def __post_init__(self) -> None:
        if self.batch < 1 or self.repeats < 1 or (self.threads is not None and self.threads < 1):
            raise ConfigError(
                f"bench.batch, bench.repeats and bench.threads must be at least 1; got "
                f"batch={self.batch}, repeats={self.repeats}, threads={self.threads}"
            )
        if self.min_sample_s < 0:
            raise ConfigError(f"bench.min_sample_s must be >= 0 seconds, not {self.min_sample_s}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"bench.dtype={self.dtype!r}: choose float32, bfloat16 or float16")


@dataclass
class SweepConfig:
    """How a preset scales a search space (ignored by single trials)."""

    # Paper arch → stand-in, so CPU presets run the same 3-architecture grid with small models.
    arch_map: dict[str, Any] = field(default_factory=dict)
    max_concurrent_trials: int | None = None  # None: derived from cluster resources
    data_cpus: float = 1.0  # CPUs left free per running trial for Ray Data (reading, decoding)
    # The system a trial belongs to in the report (e.g. "ce", "mixup", "focal"): trials of one
    # case that differ in recipe are grouped by it.
    label: str = ""
    # Optuna searches: each configuration the searcher proposes runs with this many seeds, and
    # the searcher (and ASHA) get the mean over them (sweep/seed_group.py).
    seeds_per_config: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.seeds_per_config, bool) or self.seeds_per_config < 1:
            raise ConfigError(
                f"sweep.seeds_per_config must be an integer >= 1, not {self.seeds_per_config!r} "
                "(1 runs each configuration once; e.g. sweep.seeds_per_config=3)"
            )


@dataclass
class TrialConfig:
    name: str = "trial"
    preset: str = "custom"
    run_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    @property
    def case(self) -> str:
        return f"{self.model.arch}/{self.model.conv}"

    def clip_samples(self) -> int:
        """Samples of one clip as the model sees it: ``data.clip_seconds`` (the dataset's once
        resolved; AudioSet's 10 s before) at ``audio.sample_rate``, rounded as the reader
        pads and cuts."""
        return round((self.data.clip_seconds or 10.0) * self.audio.sample_rate)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        return _build(cls, data, "")

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> TrialConfig:
        """A copy with dotted overrides applied (a dict or `key=value` strings)."""
        if isinstance(overrides, list):
            overrides = parse_overrides(overrides)
        merged = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(merged, key, value)
        return TrialConfig.from_dict(merged)

    def flat(self) -> dict[str, Any]:
        """Dotted key → value, for logging as MLflow params."""
        return flatten(self.to_dict())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("options", "arch_map"):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "model.conv=dcls_gauss"]`` → dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from err
    return out


# Keys that changed name: saved run configs keep loading, an override names the new key.
RENAMED_KEYS = {"data.task_cpus": "data.read_cpus"}


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    if key in RENAMED_KEYS:
        raise ConfigError(f"config key {key!r} is now {RENAMED_KEYS[key]!r}")
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        if part not in node or not isinstance(node[part], dict):
            path = ".".join(parts[: i + 1])
            sections = [k for k, v in node.items() if isinstance(v, dict)]
            raise ConfigError(f"unknown config section {path!r}{_suggest(part, sections)}")
        node = node[part]
    leaf = parts[-1]
    if leaf not in node and parts[-2:-1] not in (["options"], ["arch_map"]):
        raise ConfigError(f"unknown config key {key!r}{_suggest(leaf, list(node))}")
    node[leaf] = value


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid: {', '.join(sorted(choices))})"


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    for old, new in RENAMED_KEYS.items():
        old_section, _, old_leaf = old.rpartition(".")
        if where == old_section + "." and old_leaf in data:
            data = {**data, new.rpartition(".")[2]: data[old_leaf]}
            del data[old_leaf]
    unknown = set(data) - names
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown config key {where + key!r}{_suggest(key, sorted(names))}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        hint, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, value, f"{where}{f.name}.")
        else:
            kwargs[f.name] = _coerce(value, hint, where + f.name)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    is_union = get_origin(hint) in (Union, types.UnionType)
    args = get_args(hint) if is_union else ()
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{key}: may not be null")
    base = next(a for a in args if a is not type(None)) if is_union else hint
    if get_origin(base) is Literal:
        allowed = get_args(base)
        if value in allowed:
            return value
        close = _suggest(str(value), [str(a) for a in allowed])
        raise ConfigError(f"{key}={value!r} is not allowed{close}")
    origin = get_origin(base) or base
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{key}: expected {origin.__name__}, got {value!r}")


# --- presets -----------------------------------------------------------------------------


def search_spaces_dir() -> Path:
    """`search_spaces/` of the working tree (cwd first, as under `ray job submit`)."""
    env = os.environ.get("AUDIOSWEEP_SEARCH_SPACES")
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd() / "search_spaces",
        Path(__file__).resolve().parents[2] / "search_spaces",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        "no search_spaces/ folder found (looked in: "
        + ", ".join(str(c) for c in candidates)
        + "); run from the project root or set AUDIOSWEEP_SEARCH_SPACES"
    )


def list_presets() -> list[str]:
    return sorted(p.stem for p in (search_spaces_dir() / "presets").glob("*.yaml"))


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_preset(
    name_or_path: str, overrides: list[str] | dict[str, Any] | None = None
) -> TrialConfig:
    """Defaults ← preset YAML ← overrides, validated."""
    path = Path(name_or_path)
    if not path.suffix:
        path = search_spaces_dir() / "presets" / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown preset {name_or_path!r}{_suggest(name_or_path, list_presets())}"
            )
    elif not path.is_file():
        raise ConfigError(f"preset file {path} does not exist")
    data = load_yaml(path)
    data.setdefault("preset", path.stem)
    try:
        cfg = TrialConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return cfg.with_overrides(overrides or {})


def resolve_path(path: str) -> str:
    """Absolute path for a config path, relative to the current directory."""
    return str(Path(path).expanduser().resolve())
