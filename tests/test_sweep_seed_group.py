"""Seeds as a group: the group's seeds, its mean curves, and (integration) that the mean over
a configuration's seeds, as logged in their MLflow child runs, is what the searcher gets."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from audiosweep.sweep import seed_group


def test_group_seeds_start_with_the_spaces_and_continue_after_the_largest() -> None:
    assert seed_group.group_seeds([0], 3) == [0, 1, 2]
    assert seed_group.group_seeds([5, 2], 4) == [5, 2, 6, 7]
    assert seed_group.group_seeds([0, 1, 2], 2) == [0, 1]
    assert seed_group.group_seeds([3, 3], 2) == [3, 4]


def test_group_key_ignores_the_seed_but_not_the_configuration() -> None:
    a = seed_group.group_key("convnext_tiny/dcls_gauss", {"a": 1, "train.seed": 0}, [0, 1])
    assert a == seed_group.group_key("convnext_tiny/dcls_gauss", {"a": 1, "train.seed": 1}, [0, 1])
    assert a != seed_group.group_key("convnext_tiny/dcls_gauss", {"a": 2}, [0, 1])
    assert a.startswith("convnext_tiny-dcls_gauss-g0_1-")


def test_mean_curves_average_each_epoch_over_seeds() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 4))  # seeds × epochs
    losses = rng.random((3, 4))
    curves = [
        {e + 1: {"eval_map": maps[s, e], "train_loss": losses[s, e]} for e in range(4)}
        for s in range(3)
    ]
    del curves[2][4]  # one seed lacks the last epoch: only epochs all seeds reached count
    rows = seed_group.mean_curves(curves)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for e, row in enumerate(rows):
        assert row["eval_map"] == pytest.approx(maps[:, e].mean())
        assert row["eval_map_std"] == pytest.approx(maps[:, e].std(ddof=1))
        assert row["train_loss"] == pytest.approx(losses[:, e].mean())
        assert "train_loss_std" not in row  # std only beside the evaluation scores
    assert seed_group.mean_curves([]) == []
    one = seed_group.mean_curves([{1: {"eval_map": 0.5}}])
    assert one == [{"epoch": 1, "eval_map": 0.5, "eval_map_std": 0.0}]


# ---------------------------------------------------------------- integration: the searcher

FAMILY = "seed-group-test"
SEEDS = [0, 1, 2]
EPOCHS = 3


def fake_seed(config, context, *, parent_id, report_to_tune):
    """Stands in for one seed's training (the part under test is what happens around it): a
    child run of the group with an epoch curve that depends on the seed and the kernel size."""
    from audiosweep import tracking
    from audiosweep.config import TrialConfig
    from audiosweep.sweep.trainable import SeedOutcome

    assert not report_to_tune  # a group's seeds never report to Tune themselves
    seed, ks = config["seed"], config["params"]["model.dilated_kernel_size"]
    mlflow = tracking.client(context.tracking_uri)
    run, _ = tracking.child_run(
        mlflow,
        family=context.family,
        sweep_id=context.sweep_id,
        parent_id=parent_id,
        trial_key=f"ks{ks}-s{seed}",
        tags={"seed": str(seed)},
    )
    for epoch in range(1, EPOCHS + 1):
        value = 0.1 + 0.05 * epoch + 0.03 * seed**2 + ks / 1000
        tracking.log_metrics(mlflow, run.info.run_id, {"eval_map": value}, step=epoch)
    tracking.log_metrics(mlflow, run.info.run_id, {"final_map": value}, step=EPOCHS)
    mlflow.set_terminated(run.info.run_id, status="FINISHED")
    return SeedOutcome(run.info.run_id, TrialConfig(), 0, {})


def group_trainable(config, context):
    seed_group.run_seed_group(config, context, run_one=fake_seed)


@pytest.mark.integration
def test_the_searcher_gets_the_mean_over_the_seeds_child_runs(
    ray_client, mlflow_server, tmp_path
) -> None:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from audiosweep import tracking
    from audiosweep.sweep.trainable import SweepContext

    told: list[dict] = []

    class RecordingOptuna(OptunaSearch):
        def on_trial_complete(self, trial_id, result=None, error=False):
            told.append(dict(result or {}))
            super().on_trial_complete(trial_id, result=result, error=error)

    mlflow = tracking.client(mlflow_server)
    sweep_id = f"seed-group-{tmp_path.name}"
    parent = tracking.parent_run(mlflow, FAMILY, sweep_id, tags={})
    context = SweepContext(
        sweep_id=sweep_id,
        family=FAMILY,
        space="test",
        preset="smoke",
        base={},
        sweep_dir=str(tmp_path),
        tracking_uri=mlflow_server,
        parent_run_id=parent,
        git_commit="test",
    )
    tuner = tune.Tuner(
        tune.with_parameters(group_trainable, context=context),
        param_space={
            "cases": {"convnext_tiny:dcls_gauss": {"model.conv": "dcls_gauss"}},
            "case": "convnext_tiny:dcls_gauss",
            "params": {"model.dilated_kernel_size": tune.choice([7, 31])},
            "seeds": SEEDS,
        },
        tune_config=tune.TuneConfig(
            metric="eval_map", mode="max", search_alg=RecordingOptuna(seed=0), num_samples=2
        ),
        run_config=tune.RunConfig(name="t", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert len(told) == 2
    for result in told:
        group = mlflow.get_run(result["group_run_id"])
        assert group.data.tags[tracking.ROLE_TAG] == "group"
        assert group.data.tags["mlflow.parentRunId"] == parent
        assert group.info.status == "FINISHED"
        # Independently of the code under test: each seed run's last logged eval_map.
        children = mlflow.search_runs(
            [group.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{group.info.run_id}'",
        )
        assert sorted(int(c.data.tags["seed"]) for c in children) == SEEDS
        finals = [
            max(mlflow.get_metric_history(c.info.run_id, "eval_map"), key=lambda m: m.step).value
            for c in children
        ]
        assert result["epoch"] == EPOCHS
        assert result["eval_map"] == pytest.approx(statistics.fmean(finals))
        assert result["eval_map_std"] == pytest.approx(statistics.stdev(finals))
        assert result["final_map"] == pytest.approx(statistics.fmean(finals))
        # The group run keeps the same mean for the report, and the configuration's params.
        assert group.data.metrics["final_map"] == pytest.approx(statistics.fmean(finals))
        assert group.data.params["sweep.group_seeds"] == str(SEEDS)
