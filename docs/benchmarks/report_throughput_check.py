"""Check a sweep report's DCLS/DSC inference ratios against an independent measurement.

    python docs/benchmarks/report_throughput_check.py runs/sweeps/<id>/report/report.csv \
        [--preset demo] [--rounds 7] [--csv out.csv]

The report's figures come from the platform's own side-by-side timing (`train/side_by_side.py`).
This script times the same models with PyTorch's own benchmark utility instead
(`torch.utils.benchmark.Timer.blocked_autorange`, one thread, the preset's clip shape, the
report's batch), in rounds that visit every model in turn, and takes the ratio of the medians.
Run it on the machine the report was made on, with nothing else running.
"""

from __future__ import annotations

import argparse
import csv
import statistics

import torch
from torch.utils import benchmark

from audiosweep.config import load_preset
from audiosweep.models import create_model_from_config
from audiosweep.models.dcls_substitution import spread_positions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report_csv")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()

    torch.set_num_threads(1)
    with open(args.report_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["conv"] in ("dsc", "dcls_gauss")]
    base = load_preset(args.preset)
    batch = base.bench.batch
    frames = base.bench.frames or base.audio.num_frames(base.clip_samples())
    x = torch.randn(batch, 1, base.audio.n_mels, frames)
    models = {}
    for row in rows:
        cfg = base.with_overrides({"model.arch": row["model_arch"], "model.conv": row["conv"]})
        torch.manual_seed(0)
        # The report times DCLS models with their positions spread, as after training.
        model = spread_positions(create_model_from_config(cfg, 10)).eval()
        models[(row["arch"], row["conv"])] = model
    seconds: dict[tuple[str, str], list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for _ in range(args.rounds):
            for key, model in models.items():
                timer = benchmark.Timer("model(x)", globals={"model": model, "x": x}, num_threads=1)
                seconds[key].append(timer.blocked_autorange(min_run_time=0.5).median)
    out = []
    for row in rows:
        if row["conv"] != "dcls_gauss":
            continue
        dsc = statistics.median(seconds[(row["arch"], "dsc")])
        dcls = statistics.median(seconds[(row["arch"], "dcls_gauss")])
        independent = dsc / dcls
        reported = float(row["infer_x_dsc"])
        out.append(
            {
                "arch": row["arch"],
                "model_arch": row["model_arch"],
                "input": f"{batch}x1x{base.audio.n_mels}x{frames}",
                "threads": 1,
                "rounds": args.rounds,
                "report_infer_x_dsc": round(reported, 3),
                "independent_infer_x_dsc": round(independent, 3),
                "difference": round(reported - independent, 3),
            }
        )
    for r in out:
        print(
            f"{r['arch']:16s} report {r['report_infer_x_dsc']:.2f}x  independent "
            f"{r['independent_infer_x_dsc']:.2f}x  difference {r['difference']:+.2f}"
        )
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(out[0]))
            writer.writeheader()
            writer.writerows(out)


if __name__ == "__main__":
    main()
