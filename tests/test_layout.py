"""The run layout: every path of a run and a sweep from one run root (local or a URI), and the
DCLS positions as their own small file."""

from __future__ import annotations

import torch

from audiosweep.layout import RunLayout, SweepLayout
from audiosweep.models import create_model, dcls_positions
from audiosweep.train.checkpoint import load_positions, save_positions


def test_local_run_root_is_made_absolute_and_names_trial_and_sweep_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = RunLayout.at("runs")
    assert runs.root == str(tmp_path / "runs")
    assert runs.trial("t1").dir == str(tmp_path / "runs" / "t1")
    sweep = runs.sweep("grid-demo-1")
    assert sweep.dir == str(tmp_path / "runs" / "sweeps" / "grid-demo-1")
    assert sweep.sweep_id == "grid-demo-1"
    assert sweep.tune_dir == str(tmp_path / "runs" / "sweeps" / "grid-demo-1" / "tune")
    assert sweep.report_dir == str(tmp_path / "runs" / "sweeps" / "grid-demo-1" / "report")
    # A sweep's trials form a run root of their own.
    assert sweep.trials.trial("k").dir == str(
        tmp_path / "runs" / "sweeps" / "grid-demo-1" / "trials" / "k"
    )


def test_uri_run_root_keeps_its_scheme_everywhere():
    sweep = RunLayout.at("s3://bucket/team/runs/").sweep("s1")
    assert sweep.dir == "s3://bucket/team/runs/sweeps/s1"
    assert sweep.tune_dir == "s3://bucket/team/runs/sweeps/s1/tune"
    assert sweep.trials.trial("k").dir == "s3://bucket/team/runs/sweeps/s1/trials/k"
    # What a Tune trial gets back from the sweep folder it was given as a string.
    assert SweepLayout(sweep.dir).trials == sweep.trials


def test_sweep_ids_lists_the_sweeps_folder_sorted_and_nothing_when_absent(tmp_path):
    runs = RunLayout.at(str(tmp_path / "runs"))
    assert runs.sweep_ids() == []
    for sweep_id in ("grid-demo-2", "grid-demo-1"):
        (tmp_path / "runs" / "sweeps" / sweep_id).mkdir(parents=True)
    (tmp_path / "runs" / "sweeps" / "stray.txt").write_text("")
    assert runs.sweep_ids() == ["grid-demo-1", "grid-demo-2"]


def test_positions_file_round_trips_initial_and_learned_positions(tmp_path):
    model = create_model("convnext_atto", conv="dcls_gauss", num_classes=3)
    initial = {k: v.clone() for k, v in dcls_positions(model).items()}
    with torch.no_grad():
        for p in (p for n, p in model.named_parameters() if n.endswith(".P")):
            p.add_(0.75)
    learned = dcls_positions(model)
    assert set(initial) == set(learned) and initial
    path = save_positions(tmp_path, initial, learned)
    # Small next to the weights: it is what the driver reads to plot the positions.
    assert path.stat().st_size < sum(v.numel() * 4 + 256 for v in learned.values()) * 2 + 4096
    got_initial, got_learned = load_positions(path)
    for name in initial:
        assert torch.equal(got_initial[name], initial[name])
        assert torch.equal(got_learned[name], learned[name])
        assert not torch.equal(got_learned[name], got_initial[name])


def test_a_model_without_dcls_writes_no_positions_file(tmp_path):
    model = create_model("convnext_atto", conv="dsc", num_classes=3)
    assert save_positions(tmp_path, dcls_positions(model), dcls_positions(model)) is None
    assert list(tmp_path.iterdir()) == []
