"""User mistakes end in one line on stderr, exit code 2, and no Ray started (these tests carry
no `integration` marker, so conftest's guard fails any of them that starts Ray, in this process
or in the console script's).

Most cases call `audiosweep.cli.main` in this process, with stdout and stderr captured at
the file-descriptor level (so a library's log handler writing to fd 2 is seen too): each
console-script start costs about 5 s of imports. Two cases run the installed `audiosweep`
script as users do, to keep the real entry point and its exit code covered."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
AUDIOSWEEP = Path(sys.executable).parent / "audiosweep"
_UNSET = ("RAY_ADDRESS", "AUDIOSWEEP_RAY_GCS_ADDRESS", "MLFLOW_TRACKING_URI")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """`cli(args, **env)`: `audiosweep ARGS` in this process, from `tmp_path`."""
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUDIOSWEEP_SEARCH_SPACES", str(REPO / "search_spaces"))
    monkeypatch.chdir(tmp_path)

    def run(args: list[str], **env_extra: str) -> Result:
        from audiosweep.cli import main

        for name, value in env_extra.items():
            monkeypatch.setenv(name, value)
        capfd.readouterr()
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return run


def run_script(args: list[str], tmp_path: Path, **env_extra: str) -> Result:
    """The installed `audiosweep` console script in a fresh process (with the guard's
    RAY_TMPDIR, inherited)."""
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env.update(AUDIOSWEEP_SEARCH_SPACES=str(REPO / "search_spaces"))
    env.update(env_extra)
    proc = subprocess.run(
        [str(AUDIOSWEEP), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_missing_default_dataset_names_the_command_that_makes_it(cli, tmp_path):
    result = cli(["train", "--preset", "demo", "--no-track"])
    assert_one_line_error(result, "no dataset at", "audiosweep prepare demo --out data/demo")


def test_missing_dataset_path(cli, tmp_path):
    missing = tmp_path / "nowhere"
    result = cli(
        ["train", "--preset", "smoke", f"data.path={missing}", "data.prepare=null", "--no-track"],
    )
    assert_one_line_error(result, f"no dataset folder at {missing}")


def test_bad_override_value(cli, tmp_path):
    result = cli(["train", "--preset", "smoke", "train.amp=fp32", "--no-track"])
    assert_one_line_error(result, "train.amp='fp32' is not allowed", "bf16")


def test_unknown_override_key(cli, tmp_path):
    result = cli(["sweep", "grid", "--preset", "smoke", "train.epoch=1"])
    assert_one_line_error(result, "unknown config key 'train.epoch'", "epochs")


def test_model_that_cannot_be_built_fails_on_the_driver(cli, tmp_path, smoke_dataset):
    result = cli(
        [
            "train",
            "--preset",
            "smoke",
            f"data.path={smoke_dataset}",
            "model.arch=sp4asc",
            "model.conv=dcls_triangle",
            "--no-track",
        ],
    )
    assert_one_line_error(result, "model sp4asc/dcls_triangle cannot be built")


def test_clips_too_short_for_the_model_fail_on_the_driver(cli, tmp_path, smoke_dataset):
    # 0.05 s at hop 320: 6 frames, fewer than ConvNeXt's (2, 16) stem takes. The model builds;
    # only a forward pass at the trial's input shape finds it.
    result = cli(
        [
            "train",
            "--preset",
            "smoke",
            f"data.path={smoke_dataset}",
            "data.clip_seconds=0.05",
            "--no-track",
        ],
    )
    assert_one_line_error(
        result, "model convnext_atto/dsc cannot take one clip's log-mel (1, 1, 128, 6)"
    )


def test_sample_rate_mismatch(cli, tmp_path, smoke_dataset):
    result = cli(
        ["train", "--preset", "smoke", f"data.path={smoke_dataset}", "audio.sample_rate=44100"],
    )
    assert_one_line_error(result, "audio.sample_rate", "set audio.sample_rate=")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_unreachable_mlflow_server(cli, tmp_path, smoke_dataset, command):
    # A port just freed: nothing listens there.
    uri = f"http://127.0.0.1:{free_port()}"
    args = ["train"] if command == "train" else ["sweep", "grid"]
    result = cli(
        [*args, "--preset", "smoke", f"data.path={smoke_dataset}"],
        MLFLOW_TRACKING_URI=uri,
    )
    assert_one_line_error(result, f"MLflow server {uri} is not reachable", "make up")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_run_root_with_an_unknown_scheme(cli, tmp_path, smoke_dataset, command):
    args = ["train", "--no-track"] if command == "train" else ["sweep", "grid"]
    result = cli(
        [*args, "--preset", "smoke", f"data.path={smoke_dataset}", "--run-root", "ftp://h/runs"],
    )
    assert_one_line_error(result, "run root 'ftp://h/runs'", "s3://")
    assert not (tmp_path / "ftp:").exists()  # not taken for a local folder


def test_unreachable_cluster(tmp_path, smoke_dataset):
    result = run_script(
        [
            "train",
            "--preset",
            "smoke",
            f"data.path={smoke_dataset}",
            "--no-track",
            "--address",
            f"127.0.0.1:{free_port()}",
        ],
        tmp_path,
    )
    assert_one_line_error(result, "no Ray cluster answers at")


def test_dashboard_address_as_ray_address(tmp_path, smoke_dataset):
    """`make up` exports RAY_ADDRESS=http://... for `ray job submit`; a driver run outside
    its exports gets the fix, not Ray's multi-line ValueError."""
    result = run_script(
        ["train", "--preset", "smoke", f"data.path={smoke_dataset}", "--no-track"],
        tmp_path,
        RAY_ADDRESS=f"http://127.0.0.1:{free_port()}",
    )
    assert_one_line_error(result, "dashboard", "GCS address", "--address")


def test_sweep_dry_run_lists_trials_and_dropped_variants_without_starting_anything(
    cli, tmp_path, smoke_dataset
):
    result = cli(
        [
            "sweep",
            "ablation_kernel",
            "--preset",
            "smoke",
            f"data.path={smoke_dataset}",
            "--dry-run",
        ],
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "at once (a local cluster of" in out.splitlines()[0]
    trial_lines = [line for line in out.splitlines() if " seed " in line and "dropped" not in line]
    dropped = [line for line in out.splitlines() if line.strip().startswith("dropped")]
    header = out.splitlines()[0]
    assert f"{len(trial_lines)} trials" in header
    assert all("parameters >" in line for line in dropped)
    assert "model.dilated_kernel_size=" in out


def test_sweep_dry_run_plans_without_the_dataset_and_names_what_it_skipped(cli, tmp_path):
    result = cli(
        [
            "sweep",
            "ablation_kernel",
            "--preset",
            "smoke",
            f"data.path={tmp_path / 'not_prepared_yet'}",
            "--num-classes",
            "7",
            "--dry-run",
        ],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "planned without the dataset, for 7 classes; not checked:" in lines
    assert any("not_prepared_yet (data.path): its splits, sample rate" in line for line in lines)
    # Each dropped variant names the values that make it and the reason.
    dropped = [line for line in lines if line.strip().startswith("dropped")]
    assert dropped and all(
        "model.dilated_kernel_size=" in line and "model.kernel_count=" in line for line in dropped
    )
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    # Without --dry-run the missing dataset is still an error that says how to make it.
    result = cli(["sweep", "grid", "--preset", "smoke", f"data.path={tmp_path / 'nope'}"])
    assert_one_line_error(result, "no dataset at", "audiosweep prepare demo")


def test_a_relative_data_path_inside_a_ray_job_names_the_fix(cli, tmp_path):
    # What a job submitted with --working-dir sees for the preset's relative data/demo.
    copy = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_0" / "data" / "demo"
    result = cli(["train", "--preset", "demo", f"data.path={copy}", "--no-track"])
    assert_one_line_error(result, "no dataset at", "without the git-ignored data/", "absolute")
    # A sweep's run root in that copy would differ on every node and vanish with the job.
    result = cli(["sweep", "grid", "--preset", "smoke", "--run-root", str(copy.parent / "runs")])
    assert_one_line_error(result, "inside this Ray job's copy of --working-dir", "--run-root")


def test_unknown_architecture_pattern(cli, tmp_path):
    result = cli(["models", "--arch", "resnet*"])
    assert_one_line_error(result, "no architecture matches 'resnet*'")


def test_export_of_a_checkpoint_that_does_not_fit(cli, tmp_path):
    import torch

    checkpoint = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, checkpoint)
    result = cli(
        ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.safetensors")],
    )
    assert_one_line_error(result, f"{checkpoint} does not fit sp4asc/dsc")
    assert not (tmp_path / "m.safetensors").exists()
