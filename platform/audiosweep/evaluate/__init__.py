"""Evaluating checkpoints: ours, converted reference ones or MLflow logged models, on a split."""
