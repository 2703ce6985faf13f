"""SemantiCodec (Liu et al., 2024), written from `shared/design/semanticodec-spec.md`.

Loads the official checkpoints unchanged and reproduces the official tokens. Model code here
knows nothing of Ray or of files beyond loading weights.
"""

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointSource
from .codec import Provenance, SemantiCodec
from .variants import ALL_VARIANTS, SemantiCodecVariant

__all__ = [
    "ALL_VARIANTS",
    "DEFAULT_CHECKPOINT",
    "CheckpointSource",
    "Provenance",
    "SemantiCodec",
    "SemantiCodecVariant",
]
