"""The token output folder (local path or any fsspec URL): atomic shard commits, resume keys,
the run fingerprint, the manifest.

Layout under `--output`:

    tokens/part-<hash>.parquet      committed token rows (schemas/tokens.v1.json)
    failures/part-<hash>.parquet    inputs that can never be tokenized (schemas/failures.v1.json)
    retryable/part-<hash>.parquet   inputs that hit a transient error in the last run (same columns);
                                    not final: the next run retries them, and clears this folder
    manifest.json                   run summary (schemas/manifest.v1.json), written last
    README.md                       dataset card (`datasets.load_dataset(OUT)` reads tokens/failures)
    _fingerprint.json               what a resumed run must share with the first one
    _lease.json                     the writer lease of the run in progress (pipeline/output/lease.py)
    _tmp/                           files being written; never read as output

Exactly-once: a shard's name is a hash of the (id, chunk) keys it holds, each key encoded without
ambiguity, so a retried write task rewrites the same name. A shard is written under `_tmp/` and
published in one step (local: `os.replace`; object stores: a single PUT, visible only once
complete), so a crash leaves only complete shards. A rerun reads the key columns of committed
shards (in parallel) and skips what they hold.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from ..errors import OutputError
from .schema import FAILURES_SCHEMA_VERSION, TOKENS_SCHEMA_VERSION, arrow_schema

TOKENS_DIR = "tokens"
FAILURES_DIR = "failures"
RETRYABLE_DIR = "retryable"
TMP_DIR = "_tmp"
MANIFEST_FILE = "manifest.json"
FINGERPRINT_FILE = "_fingerprint.json"
PROVENANCE_KEY = "pipeline.provenance"
KEYS_KEY = "pipeline.keys"  # a shard's keys and counts, in its footer: resume reads one range per shard
FOOTER_READ_BYTES = 64 << 10
KEY_READ_THREADS = 64  # committed-key reads are latency-bound on object stores


@dataclass
class CommittedKeys:
    """What an output folder already holds, from its key columns only."""

    chunks: set[tuple[str, int]] = field(default_factory=set)  # committed (id, chunk_index)
    num_chunks: dict[str, int] = field(default_factory=dict)  # id -> chunks the input was cut into
    failed: set[str] = field(default_factory=set)  # ids with a (final) failure row
    token_rows: int = 0
    token_pairs: int = 0
    audio_s: float = 0.0
    failure_types: dict[str, int] = field(default_factory=dict)
    token_files: int = 0
    failure_files: int = 0
    provenance: dict | None = None  # of one committed token shard (they all share the codec identity)

    def add_summary(self, summary: dict) -> None:
        """Fold one write task's summary (`shards.write_records`) into these keys."""
        for key, chunk, total in json.loads(summary["token_keys_json"]):
            self.chunks.add((key, chunk))
            self.num_chunks[key] = total
        self.failed.update(json.loads(summary["failed_ids_json"]))
        if self.provenance is None and summary.get("provenance_json"):
            self.provenance = json.loads(summary["provenance_json"])
        self.token_rows += int(summary["token_rows"])
        self.token_pairs += int(summary["token_pairs"])
        self.audio_s += float(summary["audio_s"])
        for kind, count in json.loads(summary["failure_types"]).items():
            self.failure_types[kind] = self.failure_types.get(kind, 0) + count
        self.token_files += int(bool(summary["token_rows"]))
        self.failure_files += int(bool(summary["failed"]))

    def complete_ids(self) -> set[str]:
        """Inputs fully accounted for: failed, or every chunk committed."""
        per_id: dict[str, int] = {}
        for key, _ in self.chunks:
            per_id[key] = per_id.get(key, 0) + 1
        return self.failed | {key for key, count in per_id.items() if count >= self.num_chunks[key]}

    def partial_ids(self, complete: set[str] | None = None) -> set[str]:
        """Inputs with some but not all chunks committed (`complete`: `complete_ids()`, if at hand)."""
        return {key for key, _ in self.chunks} - (self.complete_ids() if complete is None else complete)


def shard_digest(keys: list[tuple[str, int]]) -> str:
    """A name for a shard from the keys it holds. Each key is JSON-encoded, so no id can collide
    with another by containing the separators (ids are free text)."""
    encoded = json.dumps(sorted([str(i), int(c)] for i, c in keys), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class OutputFolder:
    """An output folder addressed by URL; `storage_options` per protocol ({"s3": {...}})."""

    url: str
    storage_options: dict | None = None

    def filesystem(self):
        from ..fsutil import url_to_fs

        fs, root = url_to_fs(self.url, self.storage_options)
        return fs, root.rstrip("/")

    @property
    def is_local(self) -> bool:
        return _is_local(self.filesystem()[0])

    def path(self, *parts: str) -> str:
        return "/".join([self.filesystem()[1], *parts])

    def committed_files(self, kind: str) -> list[str]:
        fs, root = self.filesystem()
        try:
            names = fs.ls(f"{root}/{kind}", detail=False)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.rsplit("/", 1)[-1].startswith("part-") and n.endswith(".parquet"))

    def committed_keys(self, threads: int = KEY_READ_THREADS) -> CommittedKeys:
        """The committed keys and counts. Each shard's footer holds them (`pipeline.keys`), so one
        ranged read per shard suffices, run in parallel; shards without it fall back to the key columns."""
        fs, root = self.filesystem()
        keys = CommittedKeys()
        token_files, failure_files = self._listing(TOKENS_DIR), self._listing(FAILURES_DIR)
        keys.token_files, keys.failure_files = len(token_files), len(failure_files)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for summary in pool.map(lambda entry: _shard_keys(fs, *entry, tokens=True), token_files):
                for key, chunk, total in summary["keys"]:
                    keys.chunks.add((key, chunk))
                    keys.num_chunks[key] = total
                keys.token_rows += len(summary["keys"])
                keys.token_pairs += summary["token_pairs"]
                keys.audio_s += summary["audio_s"]
                if keys.provenance is None and summary.get("provenance"):
                    keys.provenance = summary["provenance"]
            for summary in pool.map(lambda entry: _shard_keys(fs, *entry, tokens=False), failure_files):
                keys.failed.update(summary["ids"])
                for kind, count in summary["error_types"].items():
                    keys.failure_types[kind] = keys.failure_types.get(kind, 0) + count
        return keys

    def _listing(self, kind: str) -> list[tuple[str, int]]:
        """(path, size) of the committed shards of one folder: one listing call."""
        fs, root = self.filesystem()
        try:
            entries = fs.ls(f"{root}/{kind}", detail=True)
        except FileNotFoundError:
            return []
        return sorted((e["name"], int(e.get("size") or 0)) for e in entries
                      if e["name"].rsplit("/", 1)[-1].startswith("part-") and e["name"].endswith(".parquet"))

    def clear(self) -> None:
        """Delete everything this pipeline writes (for --overwrite); other files are left alone."""
        fs, root = self.filesystem()
        for name in (TOKENS_DIR, FAILURES_DIR, RETRYABLE_DIR, TMP_DIR, MANIFEST_FILE, FINGERPRINT_FILE, "README.md"):
            if fs.exists(f"{root}/{name}"):
                fs.rm(f"{root}/{name}", recursive=True)

    def clear_retryable(self) -> None:
        """The retryable records describe the last run; a new run retries those inputs."""
        fs, root = self.filesystem()
        if fs.exists(f"{root}/{RETRYABLE_DIR}"):
            fs.rm(f"{root}/{RETRYABLE_DIR}", recursive=True)

    def write_shard(self, kind: str, table: pa.Table, provenance: dict | None = None) -> str:
        """Write one table as a committed shard named by its row keys; returns the shard path."""
        _, root = self.filesystem()
        chunks = table["chunk_index"].to_pylist() if "chunk_index" in table.column_names else [0] * len(table)
        final = f"{root}/{kind}/part-{shard_digest(list(zip(table['id'].to_pylist(), chunks)))}.parquet"
        metadata = dict(table.schema.metadata or {})
        if provenance is not None:
            metadata[PROVENANCE_KEY.encode()] = json.dumps(provenance, sort_keys=True).encode()
        metadata[KEYS_KEY.encode()] = json.dumps(_keys_summary(table), ensure_ascii=False).encode()
        buffer = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(metadata), buffer, compression="zstd")
        self.publish(f"{kind}/{final.rsplit('/', 1)[-1]}", buffer.getvalue())
        return final

    def publish(self, relative: str, data: bytes) -> None:
        """Write a file so that readers see it whole or not at all."""
        fs, root = self.filesystem()
        final = f"{root}/{relative}"
        if _is_local(fs):
            fs.makedirs(f"{root}/{TMP_DIR}", exist_ok=True)
            fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{root}/{TMP_DIR}/{uuid.uuid4().hex}"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        else:  # object stores: one PUT creates the object whole, or not at all
            fs.pipe_file(final, data)

    def read_json(self, relative: str) -> dict | None:
        fs, root = self.filesystem()
        try:
            return json.loads(fs.cat_file(f"{root}/{relative}"))
        except FileNotFoundError:
            return None

    def write_manifest(self, manifest: dict) -> None:
        self.publish(MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())

    def read_manifest(self) -> dict | None:
        return self.read_json(MANIFEST_FILE)

    # --- the run fingerprint: a resume must not mix corpora ---
    def check_fingerprint(self, fingerprint: dict, committed_provenance: dict | None = None) -> None:
        """Record `fingerprint` on the first run; refuse (OutputError) a rerun whose settings differ.
        An output written before fingerprints existed is checked against a committed shard's
        provenance (variant, dtype) instead."""
        recorded = self._read_fingerprint()
        if recorded is None:
            if committed_provenance:
                legacy = {key: committed_provenance.get(key) for key in ("variant", "dtype") if key in fingerprint}
                self._check_against({**fingerprint, **legacy}, fingerprint)
            self.publish(FINGERPRINT_FILE, (json.dumps(fingerprint, indent=2, sort_keys=True) + "\n").encode())
            return
        self._check_against(recorded, fingerprint)

    def _read_fingerprint(self) -> dict | None:
        """The recorded fingerprint, None when there is none; damaged content is a one-line OutputError."""
        fs, root = self.filesystem()
        try:
            raw = fs.cat_file(f"{root}/{FINGERPRINT_FILE}")
        except FileNotFoundError:
            return None
        try:
            recorded = json.loads(raw)
            problem = None if isinstance(recorded, dict) else f"a JSON {type(recorded).__name__}, not an object"
        except ValueError as error:
            problem = f"not JSON: {error}"
        if problem:
            raise OutputError(
                f"{self.url.rstrip('/')}/{FINGERPRINT_FILE} is damaged ({problem}); it records the settings of the "
                "output's first run. Restore it from a copy of the output, or delete it to have this run record its "
                "settings again (checked against the committed shards' variant and dtype), or pass --overwrite to "
                "start afresh")
        return recorded

    def _check_against(self, recorded: dict, fingerprint: dict) -> None:
        differences = _differences(recorded, fingerprint)
        if differences:
            shown = "; ".join(f"{key}: output has {old!r}, this run {new!r}" for key, (old, new) in differences.items())
            raise OutputError(
                f"{self.url} was written with other settings ({shown}); resuming would mix two corpora. "
                "Rerun with the original settings, choose another --output, or pass --overwrite to start afresh"
            )

    def probe_writable(self) -> None:
        """Write and delete a small object under _tmp/ (missing bucket, no PutObject, read-only folder)."""
        relative = f"{TMP_DIR}/write-probe-{uuid.uuid4().hex}"
        fs, root = self.filesystem()
        try:
            self.publish(relative, b"probe")
            fs.rm(f"{root}/{relative}")
        except Exception as error:  # the backend's own error says why (permission, no bucket, ...)
            raise OutputError(f"cannot write to the output {self.url}: {type(error).__name__}: {error}") from error


def _keys_summary(table: pa.Table) -> dict:
    if "chunk_index" in table.column_names:  # a tokens shard
        return {
            "keys": [list(k) for k in zip(*(table[c].to_pylist() for c in ("id", "chunk_index", "num_chunks")))],
            "token_pairs": int(pa.compute.sum(table["num_frames"]).as_py() or 0),
            "audio_s": float(pa.compute.sum(table["duration_s"]).as_py() or 0.0),
        }
    error_types: dict[str, int] = {}
    for kind in table["error_type"].to_pylist():
        error_types[kind] = error_types.get(kind, 0) + 1
    return {"ids": table["id"].to_pylist(), "error_types": error_types}


def _read_footer(fs, path: str, size: int):
    """The Parquet footer (FileMetaData) of a file from its last bytes: one ranged read, or two
    when the footer is larger than FOOTER_READ_BYTES (`size` 0: unknown, read the whole file)."""
    tail = fs.cat_file(path, start=max(0, size - FOOTER_READ_BYTES), end=size) if size else fs.cat_file(path)
    if tail[-4:] != b"PAR1":
        raise ValueError(f"{path} is not a Parquet file")
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 8 > len(tail):
        tail = fs.cat_file(path, start=size - length - 8, end=size)
    return pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-(length + 8):]))


def _shard_keys(fs, path: str, size: int, *, tokens: bool) -> dict:
    metadata = _read_footer(fs, path, size).metadata or {}
    if KEYS_KEY.encode() in metadata:
        summary = json.loads(metadata[KEYS_KEY.encode()])
    elif tokens:  # a shard written before footers carried keys
        summary = _keys_summary(pq.read_table(path, columns=["id", "chunk_index", "num_chunks", "num_frames",
                                                            "duration_s"], filesystem=fs))
    else:
        summary = _keys_summary(pq.read_table(path, columns=["id", "error_type"], filesystem=fs))
    if tokens and PROVENANCE_KEY.encode() in metadata:
        summary["provenance"] = json.loads(metadata[PROVENANCE_KEY.encode()])
    return summary


def _differences(old: dict, new: dict, prefix: str = "") -> dict:
    out = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def tokens_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema("tokens", TOKENS_SCHEMA_VERSION))


def failures_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema("failures", FAILURES_SCHEMA_VERSION))
