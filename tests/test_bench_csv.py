"""`audiosweep bench ... --csv PATH`: the raw results as one row per variant with the machine's
facts, written atomically; every benchmark's rows from its result."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import pytest

from audiosweep.bench import results
from audiosweep.bench.results import MACHINE_COLUMNS, isa_from_flags, write_csv
from audiosweep.cli import main


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def assert_floats(rows: list[dict[str, str]], columns: list[str]) -> None:
    for row in rows:
        for column in columns:
            float(row[column])  # raises on an empty or non-numeric cell


def test_rows_come_first_then_the_machine_columns(tmp_path) -> None:
    path = write_csv(
        tmp_path / "sub" / "r.csv",
        [
            {"variant": "a", "clips_per_s": 1 / 3, "all_s": [0.25, 0.5], "extra": None},
            {"variant": "b", "clips_per_s": 2.0},
        ],
    )
    header, rows = read_csv(path)
    assert header == ["variant", "clips_per_s", "all_s", "extra", *MACHINE_COLUMNS]
    assert [r["variant"] for r in rows] == ["a", "b"]
    assert rows[0]["clips_per_s"] == "0.333333" and rows[0]["all_s"] == "0.25 0.5"
    assert rows[0]["extra"] == rows[1]["all_s"] == ""
    assert rows[0]["logical_cores"] == str(os.cpu_count())
    assert rows[0]["torch_version"] and rows[0]["ray_version"]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("interrupted mid-write")


def test_a_failed_write_leaves_no_file(tmp_path) -> None:
    path = tmp_path / "r.csv"
    rows = [{"variant": "a", "x": 1.0}, {"variant": "b", "x": _Unprintable()}]
    with pytest.raises(RuntimeError, match="mid-write"):
        write_csv(path, rows)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        write_csv(path, [{"x": _Unprintable()}])
    assert path.read_text() == "old\n" and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ("fpu sse4_2 avx avx2 avx512f avx512bw", "avx512"),
        ("fpu sse4_2 avx avx2 fma", "avx2"),
        ("fp asimd evtstrm sve", "sve"),
        ("fp asimd evtstrm", "neon"),
        ("fpu", ""),
    ],
)
def test_isa_is_the_widest_vector_extension(flags, isa) -> None:
    assert isa_from_flags(flags.split()) == isa


def test_cpu_model_and_isa_come_from_the_first_processor() -> None:
    text = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: avx512f\n"
    )
    assert results._cpuinfo(text) == ("AMD EPYC 7B13", "avx2")


def test_the_commit_is_empty_outside_a_checkout(tmp_path) -> None:
    assert results.git_commit(tmp_path) == ""


def test_the_commit_names_this_checkout() -> None:
    commit = results.machine_facts()["commit"]
    if not (Path(__file__).resolve().parents[1] / ".git").exists():
        pytest.skip("not a git checkout")
    assert len(commit.removesuffix("-dirty")) == 40


def test_bench_augment_writes_one_row_per_stage(tmp_path, capsys) -> None:
    path = tmp_path / "augment.csv"
    argv = ["bench", "augment", "--batch", "1", "--seconds", "0.1", "--repeats", "1"]
    assert main([*argv, "--threads", "1", "--csv", str(path)]) == 0
    assert f"raw results: {path}" in capsys.readouterr().out
    header, rows = read_csv(path)
    assert header == [
        "stage",
        "wall_ms_per_batch",
        "cpu_ms_per_batch",
        "cpu_vs_frontend",
        "input_shape",
        "batch",
        "seconds",
        "sample_rate",
        "dtype",
        "threads",
        "repeats",
        *MACHINE_COLUMNS,
    ]
    assert [r["stage"] for r in rows] == [
        "frontend_log_mel",
        "pad_or_truncate",
        "random_roll",
        "speed_nearest_p0.5",
        "speed_nearest_p1",
        "speed_linear_p1",
        "resample_32k_to_35k",
    ]
    assert_floats(rows, ["wall_ms_per_batch", "cpu_ms_per_batch", "cpu_vs_frontend"])
    assert float(rows[0]["cpu_vs_frontend"]) == 1.0
    assert {r["input_shape"] for r in rows} == {"1x3200"}
    assert {(r["threads"], r["repeats"], r["dtype"]) for r in rows} == {("1", "1", "float32")}
    assert all(r["cpu_model"] and r["isa"] is not None for r in rows)


def _parser() -> argparse.ArgumentParser:
    from audiosweep.bench.commands import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["dcls"],
        ["reader", "--data", "d"],
        ["shuffle", "--data", "d"],
        ["cold-start", "--data", "d"],
        ["ingest", "--input", "in"],
        ["augment"],
    ],
)
def test_every_bench_takes_csv(tmp_path, argv) -> None:
    args = _parser().parse_args(["bench", *argv, "--csv", str(tmp_path / "new" / "r.csv")])
    assert args.csv == tmp_path / "new" / "r.csv"
    assert _parser().parse_args(["bench", *argv]).csv is None


def test_csv_refuses_a_folder_before_the_run(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["bench", "augment", "--csv", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


# The results of the benchmarks that need Ray (or a long ingest), as they return them: their
# rows are checked here without running them; the integration tests below run two on Ray.


def test_reader_rows_give_each_reader_and_its_ratio_to_the_plain_loop() -> None:
    from audiosweep.bench.reader import csv_rows

    result = {
        "split": "train",
        "planned": True,
        "mix_rows": 256,
        "read_cpus": 0.5,
        "clips": 100,
        "clip_seconds": 2.0,
        "sample_rate": 32000,
        "batch_size": 32,
        "dtype": "float32",
        "repeats": 3,
        "torch_threads": 2,
        "ray_cpus": 2.0,
        "plain_seconds": 2.0,
        "plain_first_batch_seconds": 0.1,
        "plain_clips_per_s": 50.0,
        "plain_steady_clips_per_s": 52.0,
        "ray_seconds": 1.0,
        "ray_first_batch_seconds": 0.4,
        "ray_clips_per_s": 100.0,
        "ray_steady_clips_per_s": 130.0,
    }
    rows = csv_rows(result)
    assert [r["reader"] for r in rows] == ["plain_pyarrow_soundfile", "ray_data_planned"]
    assert rows[1]["steady_vs_plain"] == 2.5 and rows[1]["whole_vs_plain"] == 2.0
    assert rows[0]["steady_vs_plain"] == 1.0 and rows[0]["read_cpus"] is None
    assert rows[1]["mix_rows"] == 256 and rows[1]["startup_s"] == 0.4
    assert csv_rows({**result, "planned": False})[1]["reader"] == "ray_data_file_order"


def test_shuffle_rows_give_each_reader_and_the_plans_cost() -> None:
    from audiosweep.bench.shuffle import csv_rows

    result = {
        "split": "train",
        "clips": 100,
        "clip_seconds": 10.0,
        "sample_rate": 32000,
        "batch_size": 32,
        "sampling": "uniform",
        "shuffle_buffer": 256,
        "read_cpus": 1.0,
        "repeats": 2,
        "torch_threads": 2,
        "ray_cpus": 2.0,
        "file_order_seconds": 2.0,
        "file_order_all_seconds": [2.0, 2.1],
        "file_order_clips_per_s": 50.0,
        "planned_seconds": 2.5,
        "planned_all_seconds": [2.5, 2.4],
        "planned_clips_per_s": 40.0,
        "cost": 0.2,
    }
    rows = csv_rows(result)
    assert [(r["variant"], r["shuffle_buffer"]) for r in rows] == [
        ("file_order", 0),
        ("per_epoch_plan", 256),
    ]
    assert [r["clips_per_s"] for r in rows] == [50.0, 40.0]
    assert {r["plan_cost_pct"] for r in rows} == {20.0}


def test_cold_start_rows_give_each_variant_and_its_ratio() -> None:
    from audiosweep.bench.cold_start import csv_rows

    result = {
        "split": "train",
        "clips": 8,
        "passes": 2,
        "warmup": 0,
        "batch_size": 4,
        "read_cpus": 1.0,
        "ray_cpus": 2.0,
        "prompt_clips_per_s": 110.0,
        "prompt_runs": [100.0, 120.0],
        "ray_default_clips_per_s": 100.0,
        "ray_default_runs": [90.0, 110.0],
        "ratio": 1.1,
    }
    rows = csv_rows(result)
    assert [r["variant"] for r in rows] == [
        "with_prompt_resource_limits",
        "without_prompt_resource_limits",
    ]
    assert [r["ratio"] for r in rows] == [1.1, 1.0]


def test_ingest_rows_give_each_variant_and_its_ratio_to_the_local_pool() -> None:
    from audiosweep.bench.ingest import csv_rows, format_result

    result = {
        "clips": 300,
        "repeats": 3,
        "cpu_count": 2,
        "workers": 2,
        "nodes": 2,
        "shard_clips": 10,
        "pool_start_seconds": 3.0,
        "labels": {"local_pool": "local pool, 2 processes", "ray_tasks": "Ray tasks, 2 node(s)"},
        "seconds": {"local_pool": 30.0, "ray_tasks": 10.0},
        "all_seconds": {"local_pool": [30.0, 31.0, 29.0], "ray_tasks": [10.0, 11.0, 9.5]},
    }
    rows = csv_rows(result)
    assert [r["variant"] for r in rows] == ["local_pool", "ray_tasks"]
    assert [r["clips_per_s"] for r in rows] == [10.0, 30.0]
    assert [r["vs_local"] for r in rows] == [1.0, 3.0]
    assert (rows[0]["workers"], rows[0]["nodes"]) == (2, None)
    assert (rows[1]["nodes"], rows[1]["shard_clips"], rows[1]["pool_start_s"]) == (2, 10, None)
    assert "Ray tasks, 2 node(s)" in format_result(result)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    from audiosweep.data import prepare_demo

    out = tmp_path_factory.mktemp("bench-csv") / "ds"
    prepare_demo(
        out, train_clips=8, eval_clips=4, clip_seconds=1.0, sample_rate=8000, progress=False
    )
    return out


@pytest.mark.integration
def test_bench_reader_and_shuffle_write_one_row_per_reader(
    ray_client, tiny_dataset, tmp_path
) -> None:
    common = ["--data", str(tiny_dataset), "--repeats", "1", "--batch-size", "4"]
    reader, shuffle = tmp_path / "reader.csv", tmp_path / "shuffle.csv"
    assert main(["bench", "reader", *common, "--planned", "--csv", str(reader)]) == 0
    assert main(["bench", "shuffle", *common, "--shuffle-buffer", "0", "--csv", str(shuffle)]) == 0

    header, rows = read_csv(reader)
    assert header[:7] == [
        "reader",
        "steady_clips_per_s",
        "whole_pass_clips_per_s",
        "whole_pass_s",
        "startup_s",
        "steady_vs_plain",
        "whole_vs_plain",
    ]
    assert header[-len(MACHINE_COLUMNS) :] == list(MACHINE_COLUMNS)
    assert [r["reader"] for r in rows] == ["plain_pyarrow_soundfile", "ray_data_planned"]
    assert_floats(rows, header[1:7])
    assert {r["clips"] for r in rows} == {"8"}

    header, rows = read_csv(shuffle)
    assert header[:5] == ["variant", "clips_per_s", "pass_s", "all_pass_s", "plan_cost_pct"]
    assert [r["variant"] for r in rows] == ["file_order", "per_epoch_plan"]
    assert_floats(rows, ["clips_per_s", "pass_s", "plan_cost_pct"])
