"""A PyTorch IterableDataset of packed sequences: sharded, shuffled by seed, resumable.

Partitioning: the shard list (shuffled by `seed + epoch` when `shuffle`) is split round-robin
over rank x DataLoader worker, so no two partitions read the same shard. Within a partition,
documents pass through a seeded shuffle buffer, then are packed. The state (`state_dict`) is the
number of sequences each partition has yielded; restoring it replays the same deterministic
stream and skips those, so iteration resumes exactly where it stopped.

With DataLoader workers each worker holds its own copy of the dataset, so resume through
torchdata's `StatefulDataLoader`: its `state_dict()` gathers every worker's `state_dict()` (and
which worker is next), its `load_state_dict()` hands each worker its own part back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

from .layout import TokenLayout
from .packing import PackedSequence, pack
from .reader import TokenCorpus

try:
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # pragma: no cover - torch is a dependency of the package
    IterableDataset, get_worker_info = object, lambda: None


class PackedTokenDataset(IterableDataset):
    def __init__(self, corpus: TokenCorpus | str, seq_len: int, *, layout: str = "interleaved", bos: bool = False,
                 eos: bool = True, seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 1024,
                 epoch: int = 0, rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False, storage_options: dict | None = None) -> None:
        self.corpus = corpus if isinstance(corpus, TokenCorpus) else TokenCorpus(corpus, storage_options)
        self.layout = TokenLayout(self.corpus.semantic_vocab_size, self.corpus.acoustic_vocab_size, layout, bos, eos)
        self.seq_len, self.seed, self.shuffle = seq_len, seed, shuffle
        self.shuffle_buffer, self.epoch, self.drop_last = shuffle_buffer, epoch, drop_last
        self.rank, self.world_size = rank, world_size
        self._yielded: dict[int, int] = {}
        self._skip: dict[int, int] = {}
        self._partitions: int | None = None  # rank x worker partitions of the pass in progress
        self._restored_partitions: int | None = None

    # --- partitioning ---
    def partition(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            try:
                import torch.distributed as dist

                if dist.is_available() and dist.is_initialized():
                    rank, world = dist.get_rank(), dist.get_world_size()
            except ImportError:  # pragma: no cover
                pass
        rank, world = rank or 0, world or 1
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return rank * workers + worker, world * workers

    def shards_for(self, part: int, parts: int) -> list[str]:
        shards = list(self.corpus.shards)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(shards)
        return shards[part::parts]

    # --- iteration ---
    def _documents(self, part: int, parts: int):
        rng = random.Random(hash((self.seed, self.epoch, part)) & 0xFFFFFFFF)
        buffer: list = []
        for shard in self.shards_for(part, parts):
            for doc in self.corpus.documents(shard):
                info = {"id": doc.id, "chunk_index": doc.chunk_index, "shard": doc.shard, "uri": doc.uri,
                        "source_start_s": doc.source_start_s, "source_end_s": doc.source_end_s}
                entry = (info, self.layout.flatten(doc.semantic, doc.acoustic))
                if not self.shuffle:
                    yield entry
                    continue
                buffer.append(entry)
                if len(buffer) >= self.shuffle_buffer:
                    yield buffer.pop(rng.randrange(len(buffer)))
        while buffer:
            yield buffer.pop(rng.randrange(len(buffer)))

    def __iter__(self) -> Iterator[dict]:
        part, parts = self.partition()
        if self._skip and self._restored_partitions not in (None, parts):
            raise ValueError(f"state was saved with {self._restored_partitions} partitions (ranks x DataLoader "
                             f"workers), this run has {parts}; resume with the same world size and num_workers")
        self._partitions = parts
        skip = self._skip.pop(part, 0)  # a restored position applies to the next pass only
        self._yielded[part] = skip
        for index, sequence in enumerate(pack(self._documents(part, parts), self.seq_len, self.drop_last)):
            if index < skip:
                continue
            self._yielded[part] = index + 1
            yield to_sample(sequence)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for another pass (call before iterating, like DistributedSampler.set_epoch)."""
        self.epoch, self._yielded, self._skip = epoch, {}, {}

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "partitions": self._partitions,
                "sequences": dict(self._yielded)}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, this dataset uses {self.seed}")
        self.epoch = state["epoch"]
        self._skip = {int(k): int(v) for k, v in state["sequences"].items() if int(v)}
        self._restored_partitions = state.get("partitions")
        self._yielded = dict(self._skip)


def to_sample(sequence: PackedSequence) -> dict:
    import torch

    return {
        "input_ids": torch.from_numpy(sequence.input_ids.astype(np.int64)),
        "boundaries": sequence.boundaries,
    }
