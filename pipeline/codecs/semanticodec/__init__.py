"""SemantiCodec (Liu et al., 2024), written from a specification of the official inference code
(no third-party model code).

Loads the official checkpoints unchanged and reproduces the official tokens. Model code here
knows nothing of Ray or of files beyond loading weights.

The names below load on first use, so importing a light submodule (`variants`, `lengths`) does
not import torch: the job's `--help` and its one-line errors stay fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ALL_VARIANTS": "variants",
    "SemantiCodecVariant": "variants",
    "DEFAULT_CHECKPOINT": "checkpoint",
    "CheckpointSource": "checkpoint",
    "Provenance": "codec",
    "SemantiCodec": "codec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
