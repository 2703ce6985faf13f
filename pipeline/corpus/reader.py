"""Read a token output folder (local or any fsspec URL) as documents, refusing mixed corpora."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from ..errors import PipelineError
from ..output import PROVENANCE_KEY, TOKENS_DIR, OutputFolder
from ..schema import TOKENS_SCHEMA_VERSION, check_table_version

_IDENTITY_KEYS = ("codec", "variant", "token_rate", "semantic_vocab_size", "acoustic_vocab_size")


class CorpusError(PipelineError):
    """The corpus cannot be used as one training set (unknown schema, mixed codecs, ...)."""


@dataclass(frozen=True)
class Document:
    id: str
    chunk_index: int
    semantic: np.ndarray
    acoustic: np.ndarray
    shard: str


class TokenCorpus:
    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.output = OutputFolder(url, storage_options)
        self.fs, _ = self.output.filesystem()
        self.shards = self.output.committed_files(TOKENS_DIR)
        if not self.shards:
            raise CorpusError(f"no committed token shards under {url}/{TOKENS_DIR}")
        self.manifest = self.output.read_manifest()
        self.provenance = self._check_shards()

    def _check_shards(self) -> dict:
        """Every shard: known schema version, and the same codec variant and checkpoint files."""
        reference, reference_shard = None, None
        for path in self.shards:
            metadata = pq.read_schema(path, filesystem=self.fs).metadata or {}
            try:
                check_table_version(metadata, "tokens", TOKENS_SCHEMA_VERSION)
            except ValueError as error:
                raise CorpusError(f"{path}: {error}") from error
            provenance = json.loads(metadata.get(PROVENANCE_KEY.encode(), b"{}"))
            identity = {k: provenance.get(k) for k in _IDENTITY_KEYS}
            identity["files"] = {name: f.get("sha256") for name, f in provenance.get("files", {}).items()}
            if reference is None:
                reference, reference_shard = identity, path
            elif identity != reference:
                diff = {k: (reference[k], identity[k]) for k in identity if identity[k] != reference[k]}
                raise CorpusError(
                    f"{path} was made with a different codec or checkpoint than {reference_shard}: {diff}; "
                    "refusing to mix them in one corpus"
                )
        return reference

    @property
    def semantic_vocab_size(self) -> int:
        return int(self.provenance["semantic_vocab_size"])

    @property
    def acoustic_vocab_size(self) -> int:
        return int(self.provenance["acoustic_vocab_size"])

    def documents(self, shard: str) -> Iterator[Document]:
        """The clips (chunks) of one shard, in file order."""
        table = pq.read_table(shard, columns=["id", "chunk_index", "semantic", "acoustic"], filesystem=self.fs)
        ids, chunks = table["id"].to_pylist(), table["chunk_index"].to_pylist()
        semantic, acoustic = table["semantic"], table["acoustic"]
        for i in range(table.num_rows):
            yield Document(ids[i], chunks[i], semantic[i].values.to_numpy(), acoustic[i].values.to_numpy(), shard)
