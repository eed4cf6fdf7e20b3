"""The training layer: recipe and schedules, the training loop, checkpoints, per-block
diagnostics and device selection. It takes a built net and a loaded dataset."""
