"""Sweeps: search spaces → Ray Tune trials (each a Ray Train run) → MLflow → report."""
