"""A dataset's summary: rows, bytes and rejections per split, positives per class."""

from __future__ import annotations

import os
from typing import Any

from .fingerprint import short
from .official import format_coverage
from .schema import DatasetInfo


def summarize(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    info = DatasetInfo.load(dataset_dir)
    splits = {}
    for name, entry in info.splits.items():
        splits[name] = {
            "rows": int(entry["rows"]),
            "audio_seconds": float(entry.get("audio_seconds", 0.0)),
            "shards": len(entry["shards"]),
            "bytes": sum(int(s["bytes"]) for s in entry["shards"]),
            "rejected": dict(entry.get("rejected_counts", {})),
            "positives_per_class": [int(n) for n in entry["positives_per_class"]],
            **({"coverage": entry["coverage"]} if "coverage" in entry else {}),
        }
    return {
        "path": str(info.path),
        "sample_rate": info.sample_rate,
        "clip_seconds": info.clip_seconds,
        "num_classes": info.num_classes,
        "task": info.task,
        "fingerprint": info.fingerprint,
        "class_names": info.class_names,
        "splits": splits,
    }


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def format_summary(summary: dict[str, Any], max_classes: int = 30) -> str:
    """Plain-text summary; positives for every class, or for the ``max_classes`` most
    frequent ones when there are more."""
    names = list(summary["splits"])
    lines = [
        f"dataset {summary['path']}",
        f"  {summary['num_classes']} classes"
        + (" (single-label)" if summary.get("task") == "singlelabel" else "")
        + f", {summary['sample_rate']} Hz, {summary['clip_seconds']:g} s clips",
        "  fingerprint "
        + (
            short(summary.get("fingerprint"))
            if summary.get("fingerprint")
            else "none (written before fingerprints; prepare it again to get one)"
        ),
    ]
    for name in names:
        s = summary["splits"][name]
        rejected = ", ".join(f"{k} {v}" for k, v in s["rejected"].items()) or "none"
        lines.append(
            f"  {name}: {s['rows']} clips ({s['audio_seconds'] / 3600:.2f} h), "
            f"{s['shards']} shard(s), {_bytes(s['bytes'])}, rejected: {rejected}"
        )
    for name in names:
        if "coverage" in summary["splits"][name]:
            lines.append(format_coverage(name, summary["splits"][name]["coverage"]))
    class_names = summary["class_names"]
    totals = [
        sum(summary["splits"][n]["positives_per_class"][k] for n in names)
        for k in range(len(class_names))
    ]
    order = list(range(len(class_names)))
    heading = "positives per class:"
    if len(order) > max_classes:
        order = sorted(order, key=lambda k: -totals[k])[:max_classes]
        absent = sum(1 for t in totals if t == 0)
        heading = (
            f"positives per class ({max_classes} most frequent of {len(class_names)}; "
            f"{absent} classes have none):"
        )
    width = max([len(class_names[k]) for k in order] + [5])
    lines.append(f"  {heading}")
    lines.append("    " + f"{'class':<{width}}  " + "  ".join(f"{n:>8}" for n in names))
    for k in order:
        counts = "  ".join(f"{summary['splits'][n]['positives_per_class'][k]:>8}" for n in names)
        lines.append(f"    {class_names[k]:<{width}}  {counts}")
    return "\n".join(lines)


def print_summary(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    summary = summarize(dataset_dir)
    print(format_summary(summary))
    return summary
