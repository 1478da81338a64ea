"""Scoring a model directory on test groups, and explaining its answers."""
