"""Stored logs into tables, figures and the model card."""
