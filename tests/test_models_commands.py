"""`audiosweep models`, `audiosweep export` and `audiosweep bench dcls` end to end (small sizes)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from audiosweep.cli import main
from audiosweep.models import create_model


def test_models_table_prints_the_paper_counts(capsys) -> None:
    assert main(["models", "--arch", "convnext_tiny"]) == 0
    lines = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == {
        ("convnext_tiny", c) for c in ("dsc", "dcls_gauss", "dcls_bilinear", "dcls_triangle")
    }
    assert "28,223,855" in lines[("convnext_tiny", "dsc")]
    assert "28,221,263" in lines[("convnext_tiny", "dcls_gauss")]
    assert "149,760" in lines[("convnext_tiny", "dcls_gauss")]


def test_models_table_rejects_a_pattern_matching_nothing(capsys) -> None:
    assert main(["models", "--arch", "resnet*"]) == 2
    assert "no architecture matches" in capsys.readouterr().err


def test_bench_dcls_reports_every_variant_and_agreement(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.csv"
    argv = [
        "bench",
        "dcls",
        "--arch",
        "convnext_atto",
        "--batch",
        "1",
        "--mels",
        "32",
        "--frames",
        "256",
        "--repeats",
        "2",
        "--reference-repeats",
        "1",
        "--json",
        str(out),
        "--csv",
        str(table),
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["setup"]["input_shape"] == [1, 1, 32, 256] and result["setup"]["threads"] >= 1
    rows = {(r["mode"], r["variant"]): r for r in result["results"]}
    variants = {
        "dsc (NCHW)",
        "dsc (channels_last)",
        "dcls package",
        "dcls fast path",
        "dcls fast, spread P",
    }
    baked = "dcls baked, spread P"  # inference only: a baked model no longer learns positions
    assert set(rows) == {(m, v) for m in ("inference", "train") for v in variants} | {
        ("inference", baked)
    }
    assert rows[("inference", baked)]["runs"] == 2
    assert result["baked_vs_fast_max_rel_diff"] < 1e-5
    assert (
        rows[("train", "dcls package")]["runs"] == 1
        and rows[("train", "dcls fast path")]["runs"] == 2
    )
    for row in rows.values():
        assert row["samples_per_s"] == 1 / row["median_s"] > 0
    assert max(result["fast_vs_package_max_rel_diff"].values()) < 1e-5
    assert "x best dsc" in capsys.readouterr().out

    # The CSV: the same figures, one row per mode and variant, named as docs/benchmarks' are.
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        header, csv_rows = reader.fieldnames, list(reader)
    assert header[:10] == [
        "mode",
        "variant",
        "median_s",
        "min_s",
        "samples_per_s",
        "x_dsc",
        "x_dsc_min",
        "x_dsc_paired",
        "runs",
        "fast_vs_package_max_rel_diff",
    ]
    assert {"input_shape", "batch", "dtype", "threads", "repeats", "cpu_model", "isa"} <= set(
        header
    )
    assert len(csv_rows) == len(rows) == 11
    fast = next(
        r
        for r in csv_rows
        if (r["mode"], r["variant"]) == ("train", "dcls_fast_positions_initialised")
    )
    assert float(fast["x_dsc"]) == pytest.approx(
        rows[("train", "dcls fast path")]["ratio_to_best_dsc"], rel=1e-5
    )
    assert fast["input_shape"] == "1x1x32x256" and fast["runs"] == "2"
    for row in csv_rows:
        for column in header[2:10]:
            float(row[column])


def test_export_writes_a_folded_fp16_sp4asc(tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    from audiosweep.models.export import load_folded_fp16

    model = create_model("sp4asc", n_mels=64).eval()
    checkpoint = tmp_path / "sp4asc.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    out = tmp_path / "export" / "sp4asc_fp16.safetensors"
    assert (
        main(["export", "--checkpoint", str(checkpoint), "--n-mels", "64", "--out", str(out)]) == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(out) and info["bytes"] == out.stat().st_size
    x = torch.randn(2, 1, 64, 100)
    with torch.no_grad():
        assert torch.allclose(load_folded_fp16(out)(x), model(x), rtol=1e-2, atol=1e-2)


def test_export_refuses_a_checkpoint_of_another_model(tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    checkpoint = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(checkpoint))
    out = tmp_path / "never.safetensors"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "does not fit sp4asc" in capsys.readouterr().err
    assert not out.exists()


# What a stock PyTorch GPU image lacks: `bench dcls` must run without any of it.
NOT_ON_A_TORCH_IMAGE = (
    "ray",
    "mlflow",
    "pyarrow",
    "optuna",
    "pandas",
    "scipy",
    "sklearn",
    "soundfile",
    "matplotlib",
)
# A None entry in sys.modules makes `import X` fail and `importlib.util.find_spec("X")` answer
# None, as on a machine without X (torch probes for optional packages with find_spec, which a
# meta-path finder that raises would break).
BLOCKED_RUN = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from audiosweep.cli import main
code = main({argv!r})
loaded = sorted(n for n in {blocked!r} if sys.modules.get(n) is not None)
print("loaded:", loaded)
sys.exit(code)
"""


def test_bench_dcls_needs_only_torch_timm_torchaudio_and_dcls(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    argv = ["bench", "dcls", "--arch", "convnext_atto", "--batch", "1", "--mels", "32"]
    argv += ["--frames", "256", "--repeats", "1", "--reference-repeats", "0", "--threads", "1"]
    argv += ["--dtypes", "float32,bfloat16", "--device", "cpu", "--json", str(out)]
    script = BLOCKED_RUN.format(blocked=NOT_ON_A_TORCH_IMAGE, argv=argv)
    platform_dir = Path(__file__).resolve().parents[1] / "platform"
    env = {**os.environ, "PYTHONPATH": str(platform_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "loaded: []" in proc.stdout
    result = json.loads(out.read_text())
    assert {(r["dtype"], r["mode"]) for r in result["results"]} == {
        (d, m) for d in ("float32", "bfloat16") for m in ("inference", "train")
    }
    assert result["setup"]["device"] == "cpu" and result["setup"]["dtype"] == "float32,bfloat16"
