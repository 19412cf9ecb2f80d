"""Tag recordings with a trained model: any file soundfile reads (WAV, FLAC, OGG, MP3), at any
sample rate (resampled with torchaudio), any channel count (averaged to mono) and any length.

A recording is cut into windows of the model's clip length (``data.clip_seconds`` of its
config) every `hop` seconds, the last one aligned to the recording's end so the tail is
scored; a recording shorter than one window is zero-padded, as the trainer pads a short clip.
Each window goes through the trial's own front end without augmentation and the model, with
the task's activation, exactly as `evaluate` scores a clip. A file's clip-level scores are the
maximum (or mean) of its windows' scores.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiosweep.config import ConfigError, TrialConfig
from audiosweep.data import audio_io

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus")


@dataclass
class FileTags:
    path: str
    seconds: float  # the recording's length
    sample_rate: int  # the file's own
    starts: np.ndarray  # (windows,) start of each window in seconds
    window_scores: np.ndarray  # (windows, classes)
    scores: np.ndarray  # (classes,) pooled over the windows


@dataclass
class Tagger:
    model: nn.Module
    frontend: nn.Module
    activation: str  # the task's: "sigmoid" (multi-label) or "softmax" (single-label)
    sample_rate: int
    window: int  # samples
    class_names: list[str]
    device: torch.device
    amp_dtype: torch.dtype | None = None

    @classmethod
    def build(cls, cfg: TrialConfig, model: nn.Module, class_names: list[str]) -> Tagger:
        from audiosweep.train.recipe import build_inputs, resolve_amp
        from audiosweep.train.task import task_for

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        activation = task_for(cfg).activation
        inputs = build_inputs(cfg, device=device, activation=activation)
        return cls(
            model=model.to(device).eval(),
            frontend=inputs.frontend.eval(),
            activation=activation,
            sample_rate=cfg.audio.sample_rate,
            window=cfg.clip_samples(),
            class_names=class_names,
            device=device,
            amp_dtype=resolve_amp(cfg.train.amp, device),
        )

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    @torch.no_grad()
    def probabilities(self, windows: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """(n, window) waveforms at the model's rate -> (n, classes) probabilities."""
        from audiosweep.evaluate.predict import predict_probabilities

        out = []
        for start in range(0, len(windows), batch_size):
            wave = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size]))
            probs = predict_probabilities(
                self.model,
                self.frontend,
                wave.to(self.device),
                activation=self.activation,
                amp_dtype=self.amp_dtype,
            )
            out.append(probs.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def tag_file(self, path: str | os.PathLike, *, hop: float, pool: str = "max") -> FileTags:
        """Decode, mix down, resample and score one file (raises `AudioDecodeError`)."""
        data, rate = audio_io.decode(path)
        wave = audio_io.resample(audio_io.to_mono(data), rate, self.sample_rate)
        starts = window_starts(len(wave), self.window, max(1, round(hop * self.sample_rate)))
        windows = np.zeros((len(starts), self.window), dtype=np.float32)
        for row, start in enumerate(starts):
            piece = wave[start : start + self.window]
            windows[row, : len(piece)] = piece
        scores = self.probabilities(windows)
        pooled = scores.max(axis=0) if pool == "max" else scores.mean(axis=0)
        return FileTags(
            path=str(path),
            seconds=data.shape[0] / rate,
            sample_rate=rate,
            starts=np.asarray(starts, dtype=np.float64) / self.sample_rate,
            window_scores=scores,
            scores=pooled,
        )


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Window starts covering `length` samples: every `hop`, and a last window that ends with
    the recording (one window at 0 when the recording fits in one)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def find_audio(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files named, and the audio files (by suffix) under the folders named, in order."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    return found


def tag_files(
    tagger: Tagger, files: list[Path], *, hop: float, pool: str
) -> Iterator[tuple[Path, FileTags | None, str | None]]:
    """(file, its tags, None) or (file, None, why it could not be read), file by file."""
    for path in files:
        try:
            yield path, tagger.tag_file(path, hop=hop, pool=pool), None
        except audio_io.AudioDecodeError as err:
            yield path, None, str(err)


def tag_files_on_ray(
    cfg: TrialConfig,
    model: nn.Module,
    class_names: list[str],
    files: list[Path],
    *,
    hop: float,
    pool: str,
    workers: int,
    cpus: float,
    gpus: float,
) -> Iterator[tuple[Path, FileTags | None, str | None]]:
    """`tag_files` over the connected Ray cluster: a pool of `workers` model replicas (Ray Data
    actors, each a `Tagger`, the resources `evaluate` gives its replicas), in file order."""
    import ray

    weights = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
    paths = ray.data.from_items([{"path": str(p)} for p in files], override_num_blocks=workers * 4)
    tagged = paths.map_batches(
        FileTagger,
        batch_size=1,  # a file can be hours long: one at a time keeps memory bounded
        batch_format="numpy",
        fn_constructor_kwargs={
            "trial": cfg.to_dict(),
            "class_names": class_names,
            "weights": [weights],
            "hop": hop,
            "pool": pool,
            "threads": max(1, int(cpus)),
        },
        concurrency=workers,
        num_cpus=cpus,
        **({"num_gpus": gpus} if gpus else {}),
    )
    found = {}
    for row in tagged.iter_rows():
        found[row["path"]] = _from_row(row, len(class_names))
    for path in files:
        yield (path, *found[str(path)])


class FileTagger:
    """A Ray Data callable class: one `Tagger` (model replica) per actor, a file per row."""

    def __init__(
        self,
        trial: dict[str, Any],
        class_names: list[str],
        weights: list[Any],
        hop: float,
        pool: str,
        threads: int = 1,
    ) -> None:
        import ray

        from audiosweep.models import create_model_from_config

        torch.set_num_threads(threads)
        cfg = TrialConfig.from_dict(trial)
        model = create_model_from_config(cfg, len(class_names))
        # The ref arrives wrapped in a list, unresolved: every replica reads the one copy.
        model.load_state_dict(ray.get(weights[0]), strict=True)
        self.tagger = Tagger.build(cfg, model, class_names)
        self.hop, self.pool = hop, pool

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: dict[str, list[Any]] = {k: [] for k in _ROW_KEYS}
        for path in batch["path"]:
            try:
                tags, error = self.tagger.tag_file(str(path), hop=self.hop, pool=self.pool), ""
            except audio_io.AudioDecodeError as err:
                tags, error = None, str(err)
            rows["path"].append(str(path))
            rows["error"].append(error)
            rows["seconds"].append(tags.seconds if tags else 0.0)
            rows["sample_rate"].append(tags.sample_rate if tags else 0)
            # Arrays as bytes: windows per file vary, and bytes cross Arrow unchanged.
            rows["starts"].append(tags.starts.astype(np.float64).tobytes() if tags else b"")
            rows["window_scores"].append(
                tags.window_scores.astype(np.float32).tobytes() if tags else b""
            )
            rows["scores"].append(tags.scores.astype(np.float32).tobytes() if tags else b"")
        return {k: np.asarray(v, dtype=object) for k, v in rows.items()}


_ROW_KEYS = ("path", "error", "seconds", "sample_rate", "starts", "window_scores", "scores")


def _from_row(row: dict[str, Any], classes: int) -> tuple[FileTags | None, str | None]:
    if row["error"]:
        return None, str(row["error"])
    return FileTags(
        path=str(row["path"]),
        seconds=float(row["seconds"]),
        sample_rate=int(row["sample_rate"]),
        starts=np.frombuffer(row["starts"], dtype=np.float64),
        window_scores=np.frombuffer(row["window_scores"], dtype=np.float32).reshape(-1, classes),
        scores=np.frombuffer(row["scores"], dtype=np.float32),
    ), None


def top_k(tags: FileTags, names: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-tags.scores, kind="stable")[:k]
    return [(names[i], float(tags.scores[i])) for i in order]


def write_tags(path: Path, results: list[FileTags], names: list[str], window_s: float) -> None:
    """Per-window scores: CSV (one row per window) or JSON (per file, its windows), written to
    a temporary file first so an interrupted run leaves no partial output."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        if path.suffix.lower() == ".json":
            json.dump([_as_json(r, names, window_s) for r in results], f, indent=1)
        else:
            writer = csv.writer(f)
            writer.writerow(["file", "start_s", "end_s", *names])
            for r in results:
                for start, row in zip(r.starts, r.window_scores, strict=True):
                    end = min(start + window_s, r.seconds)
                    writer.writerow(
                        [r.path, f"{start:.3f}", f"{end:.3f}", *(f"{v:.6f}" for v in row)]
                    )
    os.replace(tmp, path)


def _as_json(r: FileTags, names: list[str], window_s: float) -> dict[str, Any]:
    return {
        "file": r.path,
        "seconds": r.seconds,
        "sample_rate": r.sample_rate,
        "scores": dict(zip(names, map(float, r.scores), strict=True)),
        "windows": [
            {"start_s": float(s), "end_s": float(min(s + window_s, r.seconds)), "scores": row}
            for s, row in zip(r.starts, r.window_scores.round(6).tolist(), strict=True)
        ],
    }


def plot_timeline(path: Path, tags: FileTags, names: list[str], window_s: float, k: int) -> Path:
    """Scores over time of the file's top-k classes, one row per class."""
    from audiosweep.train.plots import plt  # pyplot on the headless backend

    order = np.argsort(-tags.scores, kind="stable")[:k]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(order) + 1.6))
    image = ax.imshow(
        tags.window_scores[:, order].T,
        aspect="auto",
        interpolation="nearest",
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
        extent=(0, max(tags.seconds, window_s), len(order) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(order)), [names[i] for i in order])
    ax.set_xlabel(f"time (s): {len(tags.starts)} windows of {window_s:g} s")
    ax.set_title(Path(tags.path).name)
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
