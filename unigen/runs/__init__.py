"""Runs: the run directory, checkpoints, resuming, the training loop, evaluation and samples."""
