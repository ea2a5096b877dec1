"""Featurizer, autoencoders, training and model artifacts.

Heavy names (anything that imports torch) load on first use, so `import model` stays light.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from docbits.model.errors import ArtifactError, CorpusError

__all__ = [
    "VARIANTS",
    "ArtifactError",
    "CorpusError",
    "Featurizer",
    "Hasher",
    "TrainConfig",
    "train",
]

LAZY_EXPORTS = {
    "Featurizer": "docbits.model.featurizer",
    "Hasher": "docbits.model.hasher",
    "TrainConfig": "docbits.model.train",
    "VARIANTS": "docbits.model.autoencoders",
}


def __getattr__(name: str) -> Any:
    """Import the module holding `name` on first access (PEP 562)."""
    if name not in LAZY_EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(LAZY_EXPORTS[name]), name)


class _ModelPackage(types.ModuleType):
    """`docbits.model.train` is the training function, though a submodule of that name exists."""

    @property
    def train(self) -> Any:
        """The function `docbits.model.train.train`, imported on first use."""
        return importlib.import_module("docbits.model.train").train

    @train.setter
    def train(self, value: Any) -> None:
        """Ignore the import system recording the submodule here: keep exporting the function."""


sys.modules[__name__].__class__ = _ModelPackage
