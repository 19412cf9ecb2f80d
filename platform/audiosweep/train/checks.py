"""A trial's config checked on the driver, before any worker starts: against its dataset
(splits, sample rate, task), its values, and its model, built once. A mistake found here is a
one-line `UserError`; found in a worker it would be retried `train.max_failures` times first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import device as torch_device

from audiosweep.config import ConfigError, TrialConfig, resolve_path
from audiosweep.data.schema import MANIFEST_NAME, DatasetError

# A Ray job runs in a copy of its --working-dir, which leaves out git-ignored folders like data/.
JOB_COPY_MARK = "working_dir_files"
JOB_COPY_HINT = (
    " (this Ray job runs in a copy of --working-dir without the git-ignored data/: pass an "
    'absolute data.path, e.g. data.path="$PWD/data/demo")'
)


def resolve_trial(cfg: TrialConfig) -> tuple[TrialConfig, Any]:
    """Fill what the dataset decides (clip length) and check what must agree with it."""
    from audiosweep.data import DatasetInfo

    data_path = resolve_path(cfg.data.path)
    if not Path(data_path, MANIFEST_NAME).is_file() and cfg.data.prepare:
        raise DatasetError(
            f"no dataset at {data_path} (data.path); make it with: {cfg.data.prepare}"
            + JOB_COPY_HINT * (JOB_COPY_MARK in data_path)
        )
    info = DatasetInfo.load(data_path)
    for split in (cfg.data.train_split, cfg.data.eval_split, cfg.data.val_split):
        if split is None:
            continue
        if split not in info.splits:
            raise DatasetError(
                f"dataset {data_path} has no split {split!r} (has: {', '.join(info.splits)})"
            )
    if info.sample_rate != cfg.audio.sample_rate:
        raise ConfigError(
            f"dataset {data_path} is sampled at {info.sample_rate} Hz but audio.sample_rate is "
            f"{cfg.audio.sample_rate}; set audio.sample_rate={info.sample_rate} (and check audio.f_max)"
        )
    if cfg.data.task not in ("auto", info.task):
        raise ConfigError(
            f"data.task={cfg.data.task} but dataset {data_path} is {info.task}; "
            f"drop data.task (the dataset decides) or use a {cfg.data.task} dataset"
        )
    overrides = {
        "data.path": data_path,
        "data.clip_seconds": cfg.data.clip_seconds or info.clip_seconds,
        "data.task": info.task,
    }
    if _is_local_checkpoint(cfg.model.init):  # workers run in another directory
        overrides["model.init"] = resolve_path(cfg.model.init)
    cfg = cfg.with_overrides(overrides)
    check_trial(cfg)
    return cfg, info


def _is_local_checkpoint(init: str) -> bool:
    from audiosweep.models.checkpoints import is_url
    from audiosweep.models.pretrained import INIT_CHOICES

    return init not in INIT_CHOICES and not is_url(init)


def check_trial(cfg: TrialConfig) -> None:
    """Fail on the driver, with the offending key, before any worker starts (a worker error
    would be retried `train.max_failures` times first)."""
    from audiosweep.models import list_archs
    from audiosweep.models.from_config import model_kwargs
    from audiosweep.models.pretrained import check_init
    from audiosweep.train.recipe import freq_mask_width, resolve_amp
    from audiosweep.train.task import task_for

    if cfg.model.arch not in list_archs():
        raise ConfigError(
            f"model.arch={cfg.model.arch!r} is not a known arch ({', '.join(list_archs())})"
        )
    try:
        model_kwargs(cfg)  # options the arch cannot take (e.g. SP4ASC's n_mels) fail here
        check_init(
            cfg.model.init,
            cfg.model.arch,
            cfg.model.conv,
            cfg.model.dilated_kernel_size,
            cfg.model.kernel_count,
        )
        task_for(cfg).loss(cfg)
        freq_mask_width(cfg)
        if cfg.train.amp != "fp16":
            resolve_amp(cfg.train.amp, torch_device("cpu"))
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err)) from None
    if cfg.optim.name not in ("adamw", "lamb"):
        raise ConfigError(f"optim.name must be adamw or lamb, not {cfg.optim.name!r}")


def check_on_driver(cfg: TrialConfig) -> TrialConfig:
    """Everything a trial's workers would fail on, checked on the driver before Ray starts:
    the dataset and its sample rate against the config, the config's values, and the model,
    built once. Returns the resolved config."""
    cfg, info = resolve_trial(cfg)
    check_model_builds(cfg, info.num_classes)
    return cfg


def check_model_builds(cfg: TrialConfig, num_classes: int) -> None:
    """Build the trial's model and run it once on one clip of the trial's input shape: a model
    that builds but cannot take that shape (too few frames for its downsampling) fails here,
    not in every worker after `train.max_failures` restarts."""
    import torch

    from audiosweep.models import create_model_from_config

    try:
        model = create_model_from_config(cfg, num_classes)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"model {cfg.case} cannot be built from model.*: {err}") from None
    shape = (1, 1, cfg.audio.n_mels, input_frames(cfg))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"model {cfg.case} cannot take one clip's log-mel {shape} (data.clip_seconds="
            f"{cfg.data.clip_seconds} at audio.hop_length={cfg.audio.hop_length} gives "
            f"{shape[-1]} frames; use longer clips, a shorter hop or another arch): "
            f"{' '.join(str(err).split())}"
        ) from None


def input_frames(cfg: TrialConfig) -> int:
    """Spectrogram frames of one training clip (`data.clip_seconds`, resolved)."""
    return cfg.audio.num_frames(cfg.clip_samples())
