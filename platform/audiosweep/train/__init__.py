"""Training: one trial as a Ray Train run (worker loop, optimisation, losses, metrics)."""
