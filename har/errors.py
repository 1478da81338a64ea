"""Exceptions of our own: everything a user gave us that we cannot use raises one of these.

Messages are complete sentences a visitor of the app can act on; the CLI prints them after ``error:`` and the app
shows them in a ``gr.Error``. Bugs in our own code stay ``AssertionError``/``TypeError`` and are not caught.
"""

from __future__ import annotations


class HarError(Exception):
    """Base class of every error caused by input (files, URLs, options), as opposed to a bug."""


class VideoError(HarError):
    """A video file cannot be used: missing, not a video, no decodable frame, too long, ..."""


class DatasetError(HarError):
    """A dataset folder cannot be indexed or does not fit a model (no classes, class mismatch, ...)."""


class ModelError(HarError):
    """A model directory is missing, incomplete, or was written by an incompatible version."""


class FetchError(HarError):
    """A URL cannot be fetched: not allowed, unsupported, unavailable, too long or large, network failure."""
