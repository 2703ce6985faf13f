"""Training-side reader: token shards → flat per-clip sequences → packed fixed-length sequences.

`TokenCorpus` validates a token output (schema, one codec identity) and yields the documents of
complete inputs only (`index.py`: no orphan chunks, no duplicate rows); `TokenLayout` says how a
clip's (semantic, acoustic) pairs become one id sequence; `PackedTokenDataset` packs them for a
PyTorch DataLoader, sharded by rank and worker, shuffled by seed, resumable (with workers through
torchdata's StatefulDataLoader); `indexed` writes Megatron/GPT-NeoX `.bin`/`.idx` files and
`export` is the job that does so.
"""

from .dataset import PackedTokenDataset
from .index import CorpusIndex
from .layout import TokenLayout
from .reader import CorpusError, Document, TokenCorpus

__all__ = ["CorpusError", "CorpusIndex", "Document", "PackedTokenDataset", "TokenCorpus", "TokenLayout"]
