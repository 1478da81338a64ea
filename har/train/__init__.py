"""Fitting a model directory: its recipe, the training run, its checkpoints and resume state, several machines."""
