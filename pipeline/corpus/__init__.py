"""Training-side reader: token shards → flat per-clip sequences → packed fixed-length sequences.

`TokenCorpus` validates a token output (schema, one codec variant and checkpoint) and yields
documents; `TokenLayout` says how a clip's (semantic, acoustic) pairs become one id sequence;
`PackedTokenDataset` packs them for a PyTorch DataLoader, sharded by rank and worker, shuffled
by seed, resumable; `indexed` writes Megatron/GPT-NeoX `.bin`/`.idx` files.
"""

from .dataset import PackedTokenDataset
from .layout import TokenLayout
from .reader import CorpusError, TokenCorpus

__all__ = ["CorpusError", "PackedTokenDataset", "TokenCorpus", "TokenLayout"]
