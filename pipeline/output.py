"""The token output folder (local path or any fsspec URL): atomic shard commits, resume, manifest.

Layout under `--output`:

    tokens/part-<hash>.parquet     committed token rows (schemas/tokens.v1.json)
    failures/part-<hash>.parquet   committed failure rows (schemas/failures.v1.json)
    manifest.json                  run summary (schemas/manifest.v1.json), written last
    _tmp/                          files being written; never read as output

Exactly-once: a shard's name is a hash of the sorted row keys it holds, so a retried write task
rewrites the same name. A shard is written under `_tmp/` and then published in one step
(local: `os.replace`; object stores: a single PUT, visible only once complete), so a crash
leaves only complete shards. A rerun reads the `id`/`chunk_index` columns of committed shards and
skips those rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import FAILURES_SCHEMA_VERSION, TOKENS_SCHEMA_VERSION, arrow_schema

TOKENS_DIR = "tokens"
FAILURES_DIR = "failures"
TMP_DIR = "_tmp"
MANIFEST_FILE = "manifest.json"
PROVENANCE_KEY = "pipeline.provenance"


@dataclass(frozen=True)
class OutputFolder:
    """An output folder addressed by URL; `storage_options` per protocol ({"s3": {...}})."""

    url: str
    storage_options: dict | None = None

    def filesystem(self):
        from .fsutil import url_to_fs

        fs, root = url_to_fs(self.url, self.storage_options)
        return fs, root.rstrip("/")

    def committed_files(self, kind: str) -> list[str]:
        fs, root = self.filesystem()
        try:
            names = fs.ls(f"{root}/{kind}", detail=False)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.rsplit("/", 1)[-1].startswith("part-") and n.endswith(".parquet"))

    def committed_keys(self) -> tuple[set[tuple[str, int]], dict[str, int], set[str]]:
        """(committed (id, chunk) pairs, id → num_chunks, failed ids), from key columns only."""
        fs, _ = self.filesystem()
        chunks: set[tuple[str, int]] = set()
        num_chunks: dict[str, int] = {}
        for path in self.committed_files(TOKENS_DIR):
            table = pq.read_table(path, columns=["id", "chunk_index", "num_chunks"], filesystem=fs)
            for key, chunk, total in zip(*(table[c].to_pylist() for c in ("id", "chunk_index", "num_chunks"))):
                chunks.add((key, chunk))
                num_chunks[key] = total
        failed: set[str] = set()
        for path in self.committed_files(FAILURES_DIR):
            failed.update(pq.read_table(path, columns=["id"], filesystem=fs)["id"].to_pylist())
        return chunks, num_chunks, failed

    def complete_ids(self, keys=None) -> set[str]:
        """Inputs fully accounted for: failed, or all their chunks committed (`keys`: a
        `committed_keys()` result, to avoid reading the shards twice)."""
        chunks, num_chunks, failed = keys or self.committed_keys()
        per_id: dict[str, int] = {}
        for key, _ in chunks:
            per_id[key] = per_id.get(key, 0) + 1
        return failed | {key for key, count in per_id.items() if count >= num_chunks[key]}

    def clear(self) -> None:
        fs, root = self.filesystem()
        for name in (TOKENS_DIR, FAILURES_DIR, TMP_DIR, MANIFEST_FILE):
            if fs.exists(f"{root}/{name}"):
                fs.rm(f"{root}/{name}", recursive=True)

    def write_shard(self, kind: str, table: pa.Table, provenance: dict | None = None) -> str:
        """Write one table as a committed shard named by its row keys; returns the shard path."""
        fs, root = self.filesystem()
        keys = sorted(f"{i}\x1f{c}" for i, c in zip(
            table["id"].to_pylist(),
            table["chunk_index"].to_pylist() if "chunk_index" in table.column_names else [0] * len(table),
        ))
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        final = f"{root}/{kind}/part-{digest}.parquet"
        metadata = dict(table.schema.metadata or {})
        if provenance is not None:
            metadata[PROVENANCE_KEY.encode()] = json.dumps(provenance, sort_keys=True).encode()
        table = table.replace_schema_metadata(metadata)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        if _is_local(fs):
            tmp = f"{root}/{TMP_DIR}/{uuid.uuid4().hex}.parquet"
            fs.makedirs(f"{root}/{TMP_DIR}", exist_ok=True)
            fs.makedirs(f"{root}/{kind}", exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(buffer.getvalue())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        else:  # object stores: one PUT creates the object whole, or not at all
            fs.pipe_file(final, buffer.getvalue())
        return final

    def write_manifest(self, manifest: dict) -> None:
        fs, root = self.filesystem()
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        if _is_local(fs):
            fs.makedirs(root, exist_ok=True)
            tmp = f"{root}/{TMP_DIR}/manifest-{uuid.uuid4().hex}.json"
            fs.makedirs(f"{root}/{TMP_DIR}", exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, f"{root}/{MANIFEST_FILE}")
        else:
            fs.pipe_file(f"{root}/{MANIFEST_FILE}", data)

    def read_manifest(self) -> dict | None:
        fs, root = self.filesystem()
        try:
            return json.loads(fs.cat_file(f"{root}/{MANIFEST_FILE}"))
        except FileNotFoundError:
            return None


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def tokens_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema("tokens", TOKENS_SCHEMA_VERSION))


def failures_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema("failures", FAILURES_SCHEMA_VERSION))
