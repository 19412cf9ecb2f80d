"""The dataset a run reads, in MLflow: its splits as dataset inputs and its fingerprint as a tag.

A trial logs each split it reads as an MLflow dataset input (``training``, ``evaluation``,
``validation``) whose digest is the dataset fingerprint (`audiosweep.data.fingerprint`), so
runs scored on different copies of a dataset can be told apart; the sweep's parent run carries
the fingerprint as the tag `tracking.DATASET_TAG`.
"""

from __future__ import annotations

from typing import Any

from audiosweep.tracking import DATASET_TAG

# MLflow's input tag that says what a run used a dataset for.
DATASET_CONTEXT_TAG = "mlflow.data.context"


def dataset_inputs(
    data_cfg: Any, uses: dict[str, str] | None = None
) -> tuple[str | None, list[Any]]:
    """(short fingerprint, MLflow dataset inputs) of the splits a run reads (`uses`: split ->
    context; default a trial's: train as ``training``, eval as ``evaluation`` and a
    ``val_split``, when set, as ``validation``).
    The MLflow digest is the dataset fingerprint, the name ``<folder>/<split>``; (None, [])
    when the dataset cannot be read here."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    from audiosweep.data import DatasetError, DatasetInfo
    from audiosweep.data.fingerprint import short

    try:
        info = DatasetInfo.load(data_cfg.path)
    except DatasetError:
        return None, []
    fp = info.fingerprint
    if uses is None:
        uses = {data_cfg.train_split: "training", data_cfg.eval_split: "evaluation"}
        val = getattr(data_cfg, "val_split", None)
        if val:
            uses[val] = "validation"
    inputs = []
    for split, context in uses.items():
        if split not in info.splits:
            continue
        entry = info.splits[split]
        dataset = Dataset(
            name=f"{info.path.name}/{split}",
            digest=short(fp),
            source_type="local",
            source=json.dumps({"uri": str(info.path), "split": split}),
            profile=json.dumps(
                {
                    "rows": int(entry["rows"]),
                    "fingerprint": fp,
                    "content_digest": entry.get("content_digest"),
                }
            ),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, context)]))
    return (short(fp) if fp else None), inputs


def log_dataset_inputs(
    mlflow_client, run_id: str, data_cfg: Any, uses: dict[str, str] | None = None
) -> str | None:
    """Log the dataset a run reads as its MLflow dataset inputs (once: a restarted trial finds
    them logged) and tag the run with its fingerprint; returns the short fingerprint."""
    fp, inputs = dataset_inputs(data_cfg, uses)
    if not inputs:
        return None
    run = mlflow_client.get_run(run_id)
    logged = {
        (d.dataset.name, d.dataset.digest)
        for d in (run.inputs.dataset_inputs if run.inputs else [])
    }
    todo = [d for d in inputs if (d.dataset.name, d.dataset.digest) not in logged]
    if todo:
        mlflow_client.log_inputs(run_id, datasets=todo)
    if fp:
        mlflow_client.set_tag(run_id, DATASET_TAG, fp)
    return fp


def tag_dataset(mlflow_client, run_id: str, data_path: str) -> str | None:
    """Tag a (sweep parent) run with the short fingerprint of the dataset at ``data_path``."""
    from audiosweep.data import DatasetError, DatasetInfo
    from audiosweep.data.fingerprint import short

    try:
        fp = DatasetInfo.load(data_path).fingerprint
    except DatasetError:
        return None
    if fp:
        mlflow_client.set_tag(run_id, DATASET_TAG, short(fp))
    return short(fp) if fp else None
