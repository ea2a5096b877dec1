"""Typed errors of the model library, so callers can tell bad inputs from bugs."""

from __future__ import annotations


class ArtifactError(Exception):
    """A model directory is missing, damaged or inconsistent; the message names the file."""


class CorpusError(Exception):
    """A corpus cannot be read or parsed; the message names the path and the problem."""
