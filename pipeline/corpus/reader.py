"""Read a token output folder (local or any fsspec URL) as documents, refusing mixed corpora and
leaving out inputs that are not complete (see `index.py`).

Each document says where its audio is: `uri` and the span [source_start_s, source_end_s) of that
object it covers (None in files written before spans, tokens schema minor < 2), so a training job
can find a row's source, re-tokenize it or align it with text, and tell which chunks are
consecutive parts of one file (`Document.continues`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from ..errors import UserError
from ..output.folder import FAILURES_DIR, PROVENANCE_KEY, TOKENS_DIR, OutputFolder
from ..output.identity import codec_identity, identity_differences
from ..output.schema import TOKENS_SCHEMA_VERSION, check_table_version
from .index import KEY_COLUMNS, CorpusIndex, build_index

READ_THREADS = 32  # key-column reads are latency-bound on object stores


class CorpusError(UserError):
    """The corpus cannot be used as one training set (no shards, unknown schema, mixed codecs, ...)."""


SPAN_COLUMNS = ("source_start_s", "source_end_s")  # since tokens schema minor 2
SPAN_TOLERANCE_S = 1e-6


@dataclass(frozen=True)
class Document:
    id: str
    chunk_index: int
    semantic: np.ndarray
    acoustic: np.ndarray
    shard: str
    uri: str = ""
    num_chunks: int = 1
    source_start_s: float | None = None  # the span of the object at `uri` this chunk covers, seconds
    source_end_s: float | None = None

    def continues(self, previous: Document) -> bool:
        """True when this chunk is the part of the same source object right after `previous`."""
        if (self.id, self.uri, self.chunk_index) != (previous.id, previous.uri, previous.chunk_index + 1):
            return False
        if self.source_start_s is None or previous.source_end_s is None:
            return True  # files without spans: the chunk order is all there is
        return abs(self.source_start_s - previous.source_end_s) <= SPAN_TOLERANCE_S


class TokenCorpus:
    """The committed token shards of an output folder, checked to be one corpus.

    `index` says what is left out: `incomplete_ids` (a chunk missing or a failure recorded) and
    `duplicate_rows` (a key committed twice); `documents()` never yields those rows.
    """

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.output = OutputFolder(url, storage_options)
        self.fs = self.output.fs
        self._arrow_fs = None if self.output.is_local else self.fs  # pyarrow's own local reads are faster
        self.shards = self.output.committed_files(TOKENS_DIR)
        if not self.shards:
            raise CorpusError(f"no committed token shards under {url}/{TOKENS_DIR}: "
                              "is this the --output folder of a tokenize run?")
        self.run_record = self.output.read_run_record()
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            keys = list(pool.map(self._read_keys, self.shards))
            failed = [i for ids in pool.map(self._read_failed_ids, self.output.committed_files(FAILURES_DIR))
                      for i in ids]
        self.provenance = self._check_shards([table.schema.metadata for table in keys])
        self.index: CorpusIndex = build_index(list(zip(self.shards, keys, strict=True)), failed)

    def _read_keys(self, shard: str):
        return pq.read_table(shard, columns=KEY_COLUMNS, filesystem=self._arrow_fs)

    def _read_failed_ids(self, shard: str) -> list[str]:
        return pq.read_table(shard, columns=["id"], filesystem=self._arrow_fs)["id"].to_pylist()

    def _check_shards(self, metadatas: list[dict | None]) -> dict:
        """Every shard: known schema version, and the same codec identity (`pipeline.output.identity`)."""
        reference = reference_identity = reference_shard = None
        for path, metadata in zip(self.shards, metadatas, strict=True):
            metadata = metadata or {}
            try:
                check_table_version(metadata, "tokens", TOKENS_SCHEMA_VERSION)
            except ValueError as error:
                raise CorpusError(f"{path}: {error}") from error
            provenance = json.loads(metadata.get(PROVENANCE_KEY.encode(), b"{}"))
            identity = codec_identity(provenance)
            if reference is None:
                reference, reference_identity, reference_shard = provenance, identity, path
            elif identity != reference_identity:
                raise CorpusError(
                    f"{path} was made with a different codec or checkpoint than {reference_shard}: "
                    f"{identity_differences(reference_identity, identity)}; refusing to mix them in one corpus"
                )
        return reference

    @property
    def incomplete_ids(self) -> tuple[str, ...]:
        return self.index.incomplete_ids

    @property
    def semantic_vocab_size(self) -> int:
        return int(self.provenance["semantic_vocab_size"])

    @property
    def acoustic_vocab_size(self) -> int:
        return int(self.provenance["acoustic_vocab_size"])

    def documents(self, shard: str) -> Iterator[Document]:
        """The clips (chunks) of one shard that belong to complete inputs, in file order."""
        names = pq.read_schema(shard, filesystem=self._arrow_fs).names
        spans = [c for c in SPAN_COLUMNS if c in names]
        table = pq.read_table(shard, columns=["id", "chunk_index", "num_chunks", "uri", "semantic", "acoustic", *spans],
                              filesystem=self._arrow_fs)
        mask = self.index.keep_mask(shard, table.num_rows)
        if mask is not None:
            table = table.filter(mask)
        ids, chunks, counts, uris = (table[c].to_pylist() for c in ("id", "chunk_index", "num_chunks", "uri"))
        starts, ends = (table[c].to_pylist() if c in spans else [None] * table.num_rows for c in SPAN_COLUMNS)
        semantic, acoustic = table["semantic"], table["acoustic"]
        for i in range(table.num_rows):
            yield Document(ids[i], chunks[i], semantic[i].values.to_numpy(), acoustic[i].values.to_numpy(), shard,
                           uris[i], counts[i], starts[i], ends[i])
