"""A trial's figures, logged with its MLflow run: learning curves and learned DCLS positions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def learning_curves(rows: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = (("train_loss", "train loss"), ("eval_map", "eval mAP"), ("lr", "learning rate"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [r.get(key) for r in rows]
        ax.plot(epochs, [math.nan if v is None else v for v in values], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def dcls_positions_plot(
    start: dict[str, Any], end: dict[str, Any], dilated_kernel_size: int, out: Path, title: str = ""
) -> Path | None:
    """Save `dcls_positions_figure` to `out`; None when no stage has positions."""
    fig = dcls_positions_figure(start, end, dilated_kernel_size, title)
    if fig is None:
        return None
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def dcls_positions_figure(
    start: dict[str, Any], end: dict[str, Any], dilated_kernel_size: int, title: str = ""
) -> Figure | None:
    """Kernel-element positions per stage on the dilated grid, at init (grey) and at the end.

    `start`/`end` map a stage name to an (axes, C, K) tensor of positions in the grid frame of
    `models.dcls_positions`: 0 .. dilated_kernel_size - 1, centre at size // 2. 2-d layers
    (axes 2: time, mel) are drawn on the grid; 1-d layers (SP4ASC) as position per channel.
    The axes show the whole grid, each cell centred on its index.
    """
    stages = [s for s in end if s in start]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.4), squeeze=False)
    grid = (-0.5, dilated_kernel_size - 0.5)
    for ax, stage in zip(axes[0], stages, strict=True):
        one_d = end[stage].shape[0] == 1
        for positions, style in (
            (start[stage], dict(c="0.7", s=2)),
            (end[stage], dict(c="C3", s=2)),
        ):
            p = positions.float().cpu().numpy()
            if one_d:
                along, channels = p.reshape(p.shape[1], -1), p.shape[1]
                rows = np.repeat(np.arange(channels), along.shape[1])
                ax.scatter(along.ravel(), rows, alpha=0.5, linewidths=0, **style)
            else:
                p = p.reshape(2, -1)
                ax.scatter(p[0], p[1], alpha=0.5, linewidths=0, **style)
        ax.set_xlim(*grid)
        if one_d:
            ax.set_ylim(-0.5, end[stage].shape[1] - 0.5)
            ax.set_xlabel("position on the grid")
            ax.set_ylabel("channel")
        else:
            ax.set_ylim(*grid)
            ax.set_aspect("equal")
            ax.set_xlabel("time (grid column)")
            ax.set_ylabel("mel (grid row)")
        ax.set_title(stage, fontsize=9)
        ax.grid(alpha=0.2)
    fig.suptitle(
        title
        or f"DCLS positions on the {dilated_kernel_size}x{dilated_kernel_size} grid: init (grey) vs learned (red)"
    )
    fig.tight_layout()
    return fig
