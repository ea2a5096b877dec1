"""Typed errors of the model library, so callers can tell bad inputs from bugs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ArtifactError(Exception):
    """A model directory is missing, damaged or inconsistent; the message names the file."""


class CorpusError(Exception):
    """A corpus cannot be read or parsed; the message names the path and the problem."""


def read_json_artifact(path: Path, what: str) -> Any:
    """Parse one JSON file of a model directory; missing or malformed raises ArtifactError."""
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError as error:
        raise ArtifactError(f"{path}: {what} file is missing") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error})") from error
