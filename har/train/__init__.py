"""Fitting a model directory: the training run, its checkpoints and resume state, several machines."""
