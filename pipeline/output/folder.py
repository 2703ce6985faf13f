"""The token output folder (local path or any fsspec URL): atomic shard commits, resume keys,
the run fingerprint, the run record.

Layout under `--output`:

    tokens/part-<hash>.parquet      committed token rows (schemas/tokens.v1.json)
    failures/part-<hash>.parquet    inputs that can never be tokenized (schemas/failures.v1.json)
    retryable/part-<hash>.parquet   inputs that hit a transient error (same columns); not final: the
                                    next run retries them, and their new rows supersede these
    manifest.json                   the run record (schemas/manifest.v1.json), written last
    README.md                       dataset card (`datasets.load_dataset(OUT)` reads tokens/failures)
    _fingerprint.json               what a resumed run must share with the first one
    _lease.json                     the writer lease of the run in progress (pipeline/output/lease.py)
    _keys_index.parquet             object stores only: the shards' footers in one file (key_index.py)
    _tmp/                           files being written; never read as output

Exactly-once: a shard's name is a hash of the (id, chunk) keys it holds, each key encoded without
ambiguity, so a retried write task rewrites the same name. A shard is written under `_tmp/` and
published in one step (local: `os.replace`; object stores: a single PUT, visible only once
complete), so a crash leaves only complete shards. A rerun reads the key columns of committed
shards (in parallel) and skips what they hold.

Supersede rule (retries): a row in failures/ or retryable/ is void when another committed shard
declares it superseded: each shard that holds new rows of an input retried lists, in its footer
(`pipeline.keys` → `supersedes`), the shard that held the input's old row. The old row thus
stops counting in the same atomic step that commits the new one, and a crash before it leaves the
old row in place: every id is counted once at every instant. Void rows are then removed
(`drop_superseded`: each such shard rewritten in place without them, or deleted when empty); a run
killed before that leaves them to the next run, whose first step it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import OutputError
from ..fsutil import is_local_fs, url_to_fs
from .identity import ID_RULE_KEY, LEGACY_ID_RULE
from .key_index import INDEX_FILE, index_bytes, listing_etag, read_index
from .schema import FAILURES_SCHEMA_VERSION, TOKENS_SCHEMA_VERSION, arrow_schema
from .summary import ShardSummary, footer_keys
from .supersede import declared_void, relative_shard

TOKENS_DIR = "tokens"
FAILURES_DIR = "failures"
RETRYABLE_DIR = "retryable"
TMP_DIR = "_tmp"
RUN_RECORD_FILE = "manifest.json"
FINGERPRINT_FILE = "_fingerprint.json"
PROVENANCE_KEY = "pipeline.provenance"
KEYS_KEY = "pipeline.keys"  # a shard's keys and counts, in its footer: resume reads one range per shard
FOOTER_READ_BYTES = 64 << 10
KEY_READ_THREADS = 64  # committed-key reads are latency-bound on object stores
MERGE_PARTS = 256  # committed keys' Arrow pieces merged at a time (`ArrowParts`)


class ArrowParts:
    """Arrow tables or arrays folded in one at a time (one per shard), merged `MERGE_PARTS` at a time:
    thousands of small pieces cost several times their bytes."""

    def __init__(self) -> None:
        self.merged: list = []
        self.pending: list = []

    def append(self, piece) -> None:
        self.pending.append(piece)
        if len(self.pending) >= MERGE_PARTS:
            first = self.pending[0]
            self.merged.append(pa.concat_tables(self.pending).combine_chunks() if isinstance(first, pa.Table)
                               else pa.concat_arrays(self.pending))
            self.pending = []

    def pieces(self) -> list:
        return self.merged + self.pending

    def __bool__(self) -> bool:
        return bool(self.merged or self.pending)


@dataclass
class CommittedKeys:
    """What an output folder holds, from its shards' footers, and what a run commits (its write
    summaries folded in as they come). The keys are columns, not Python objects: at a million
    inputs a set of tuples cost 190 bytes a token key on the driver, these about the id's bytes.
    Only the rows being retried (a run's retryable rows, `--retry-failures`) are kept as dicts."""

    token_parts: ArrowParts = field(default_factory=ArrowParts)  # committed (id, chunk_index, num_chunks) tables
    failed_parts: ArrowParts = field(default_factory=ArrowParts)  # arrays of ids with a (final) failure row
    unfailed: set[str] = field(default_factory=set)  # retried ids whose failure row a new row superseded
    token_rows: int = 0
    token_pairs: int = 0
    audio_s: float = 0.0
    failure_types: dict[str, int] = field(default_factory=dict)
    token_files: int = 0
    failure_files: int = 0
    provenance: dict | None = None  # of one committed token shard (they all share the codec identity)
    retryable: dict[str, str] = field(default_factory=dict)  # id -> the retryable/ shard holding its row
    void: dict[str, set[str]] = field(default_factory=dict)  # shard (relative path) -> ids superseded in it
    retrying: dict[str, str] = field(default_factory=dict)  # id -> error type of a failure being retried

    def add_summary(self, summary: ShardSummary) -> None:
        """Fold one write task's summary (`shards.write_records`), or a committed shard's
        (`ShardSummary.from_footer`), into these keys."""
        if summary.token_keys:
            ids, chunks, totals = zip(*summary.token_keys, strict=True)
            self.token_parts.append(pa.table({"id": pa.array(ids, pa.string()), "chunk_index": pa.array(chunks, _INT),
                                              "num_chunks": pa.array(totals, _INT)}))
        for shard, ids in summary.superseded.items():
            self.void.setdefault(shard, set()).update(ids)
            for key in ids:
                self._forget(shard, key)
        if summary.failed_ids:
            self.failed_parts.append(pa.array(summary.failed_ids, pa.string()))
            self.unfailed.difference_update(summary.failed_ids)
        for key, shard in summary.retryable_ids:
            self.retryable[key] = shard
        if self.provenance is None and summary.provenance:
            self.provenance = summary.provenance
        self.token_rows += summary.token_rows
        self.token_pairs += summary.token_pairs
        self.audio_s += summary.audio_s
        for kind, count in summary.failure_types.items():
            self.failure_types[kind] = self.failure_types.get(kind, 0) + count
        self.token_files += int(bool(summary.token_rows))
        self.failure_files += int(bool(summary.failed))

    def still_counted(self, shard: str, key: str) -> bool:
        """Whether the row of `key` in the retryable or retried failure shard `shard` still counts
        (no new row superseded it)."""
        if shard.startswith(f"{RETRYABLE_DIR}/"):
            return self.retryable.get(key) == shard
        return key in self.retrying

    def void_row(self, shard: str, key: str) -> None:
        """The row of `key` in `shard` is obsolete: it no longer counts, and `void` says to remove it."""
        self.void.setdefault(shard, set()).add(key)
        self._forget(shard, key)

    def _forget(self, shard: str, key: str) -> None:
        """The row of `key` in `shard` was superseded: it no longer counts."""
        if shard.startswith(f"{RETRYABLE_DIR}/"):
            if self.retryable.get(key) == shard:
                del self.retryable[key]
        elif key in self.retrying:  # (a failure row being retried; the failed ids hold it)
            self.unfailed.add(key)
            kind = self.retrying.pop(key)
            self.failure_types[kind] -= 1
            if not self.failure_types[kind]:
                del self.failure_types[kind]

    def retry(self, rows: list[dict]) -> None:
        """Mark the failure rows `rows` (`OutputFolder.failure_rows`) as being retried: they keep
        counting (as their shards hold them) until a summary says new rows superseded them."""
        self.retrying.update({row["id"]: row["error_type"] for row in rows})

    @property
    def empty(self) -> bool:
        return not self.token_parts and not self.failed_parts

    def failed_ids(self) -> pa.Array:
        """The ids whose final failure row counts (distinct)."""
        failed = _unique(self.failed_parts.pieces())
        return _without(failed, self.unfailed)

    def progress(self) -> tuple[pa.Array, pa.Array]:
        """(complete, partial) ids, distinct: inputs fully accounted for (failed and not being
        retried, or every chunk committed), and inputs with some but not all chunks committed."""
        final_failures = _without(self.failed_ids(), self.retrying.keys())
        counted = self._tokens().group_by("id", use_threads=False).aggregate(
            [("chunk_index", "count_distinct"), ("num_chunks", "max")])
        whole = pc.greater_equal(counted["chunk_index_count_distinct"], counted["num_chunks_max"])
        complete = _unique([counted["id"].filter(whole), final_failures])
        return complete, _without(counted["id"].filter(pc.invert(whole)), final_failures)

    def outcome_counts(self) -> dict[str, int]:
        """The inputs by outcome: tokenized, failed, retryable, incomplete (some chunks committed),
        and all of them (an input counts once, where the supersede rule puts it)."""
        complete, partial = self.progress()
        failed = self.failed_ids()
        tokenized = _without(complete, failed)
        everyone = _unique([tokenized, failed, partial, pa.array(list(self.retryable), pa.string())])
        return {"inputs": len(everyone), "tokenized": len(tokenized), "failed": len(failed),
                "retryable": len(self.retryable), "incomplete": len(partial)}

    def chunk_keys(self, ids: set[str] | None = None) -> set[tuple[str, int]]:
        """The committed (id, chunk_index) keys, of the inputs `ids` only if given (what the decode
        tasks skip of partial inputs)."""
        tokens = self._tokens()
        if ids is not None:
            tokens = tokens.filter(pc.is_in(tokens["id"], value_set=pa.array(list(ids), pa.string())))
        return set(zip(tokens["id"].to_pylist(), tokens["chunk_index"].to_pylist(), strict=True))

    def _tokens(self) -> pa.Table:
        if not self.token_parts:
            return pa.table({"id": pa.array([], pa.string()), "chunk_index": pa.array([], _INT),
                             "num_chunks": pa.array([], _INT)})
        return pa.concat_tables(self.token_parts.pieces())


_INT = pa.int32()


def _unique(parts: list) -> pa.Array:
    """The distinct strings of `parts` (arrays or chunked arrays), in first-seen order."""
    chunks = [chunk for part in parts for chunk in getattr(part, "chunks", [part])]
    if not chunks:
        return pa.array([], pa.string())
    return pc.unique(pa.chunked_array(chunks, pa.string()))


def _without(ids: pa.Array, removed) -> pa.Array:
    """`ids` without those in `removed` (a set, a dict's keys or an Arrow array)."""
    if not len(removed):
        return ids
    if isinstance(removed, pa.ChunkedArray):
        removed = removed.combine_chunks()
    value_set = removed if isinstance(removed, pa.Array) else pa.array(list(removed), pa.string())
    return ids.filter(pc.invert(pc.is_in(ids, value_set=value_set)))


def shard_digest(keys: list[tuple[str, int]]) -> str:
    """A name for a shard from the keys it holds. Each key is JSON-encoded, so no id can collide
    with another by containing the separators (ids are free text)."""
    encoded = json.dumps(sorted([str(i), int(c)] for i, c in keys), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class OutputFolder:
    """An output folder addressed by URL; `storage_options` per protocol ({"s3": {...}}).

    Its filesystem is resolved once, on first use (`fs`, `root`); the folder owns what is done
    with it: listing the committed shards, publishing a file atomically, the write probe."""

    url: str
    storage_options: dict | None = None

    @cached_property
    def _resolved(self) -> tuple:
        fs, root = url_to_fs(self.url, self.storage_options)
        return fs, root.rstrip("/")

    @property
    def fs(self):
        """The folder's fsspec filesystem."""
        return self._resolved[0]

    @property
    def root(self) -> str:
        """The folder's path on `fs` (no trailing slash)."""
        return self._resolved[1]

    @property
    def is_local(self) -> bool:
        return is_local_fs(self.fs)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def committed_files(self, kind: str) -> list[str]:
        """The paths of the committed shards of one folder (tokens/, failures/, retryable/), sorted."""
        return [path for path, _, _ in self._listing(kind)]

    def files(self) -> dict[str, int]:
        """{path relative to the folder: bytes} of every file under it ({} when it does not exist)."""
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        return {path[len(self.root):].lstrip("/"): int(info.get("size") or 0) for path, info in found.items()}

    def committed_keys(self, threads: int = KEY_READ_THREADS) -> CommittedKeys:
        """The committed keys and counts, with the supersede rule applied. Each shard's footer holds
        them (`pipeline.keys`), so one ranged read per shard suffices, run in parallel (shards
        without it fall back to the key columns); on an object store, the key index holds the
        footers of the shards unchanged since it was written (`key_index.py`)."""
        keys = CommittedKeys()
        listings, read = self._footer_reads(threads)
        void = declared_void({shard: footer.get("supersedes") or {} for footers in read.values()
                              for shard, footer in footers},
                             {shard: footer["ids"] for kind in (FAILURES_DIR, RETRYABLE_DIR)
                              for shard, footer in read[kind]})
        for kind, footers in read.items():
            for shard, footer in footers:
                gone = void.get(shard, set())
                summary = ShardSummary.from_footer(kind, shard, footer, gone,
                                                   self._error_types(shard, footer) if gone else None)
                keys.add_summary(replace(summary, superseded={}))  # the declarations are applied: `void`
        keys.void = void
        keys.token_files, keys.failure_files = len(listings[TOKENS_DIR]), len(listings[FAILURES_DIR])
        return keys

    def refresh_key_index(self, threads: int = KEY_READ_THREADS) -> None:
        """Bring the key index up to date with the committed shards (the end of a run: the next
        resume then reads one file, not each new shard's footer). Local folders keep no index."""
        if not self.is_local:
            self._footer_reads(threads)

    def _footer_reads(self, threads: int) -> tuple[dict, dict]:
        """({kind: its listing}, {kind: [(shard, footer keys)]}) of the committed shards: from the
        key index where a shard is unchanged since, else from its footer; the index is written
        anew when it was behind (filesystems with ETags only)."""
        listings = {kind: self._listing(kind) for kind in (TOKENS_DIR, FAILURES_DIR, RETRYABLE_DIR)}
        indexed = any(etag for entries in listings.values() for _, _, etag in entries)
        index = read_index(self.fs, self.path(INDEX_FILE)) if indexed else {}
        with ThreadPoolExecutor(max_workers=threads) as pool:
            read = {kind: _footers(pool, self.fs, kind, entries, index) for kind, entries in listings.items()}
        if indexed:
            rows = [(shard, size, etag, json.dumps(footer) if text is None else text)
                    for kind, entries in listings.items()
                    for (_, size, etag), (shard, footer, text) in zip(entries, read[kind], strict=True)]
            if {row[:3] for row in rows} != {(shard, *entry[:2]) for shard, entry in index.items()}:
                self.publish(INDEX_FILE, index_bytes(rows))
        return listings, {kind: [(shard, footer) for shard, footer, _ in found] for kind, found in read.items()}

    def _error_types(self, shard: str, summary: dict) -> list[str]:
        """Each row's error type, in order: from the footer, or (older shards) the column."""
        if "types" in summary:
            return summary["types"]
        return pq.read_table(self.path(shard), columns=["error_type"], filesystem=self.fs)["error_type"].to_pylist()

    def failure_rows(self, void: dict[str, set[str]] | None = None,
                     threads: int = KEY_READ_THREADS) -> list[dict]:
        """Every row of failures/ that is not void: {id, stage, error_type, shard}."""
        fs = self.fs
        void = void or {}

        def rows(path: str) -> list[dict]:
            shard = relative_shard(path)
            table = pq.read_table(path, columns=["id", "stage", "error_type"], filesystem=fs)
            return [{**row, "shard": shard} for row in table.to_pylist() if row["id"] not in void.get(shard, ())]

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return [row for found in pool.map(rows, self.committed_files(FAILURES_DIR)) for row in found]

    def drop_superseded(self, void: dict[str, set[str]]) -> list[str]:
        """Remove void rows: each shard holding some is rewritten in place (same name: one atomic
        replace) without them, or deleted when none is left (returned). Safe to repeat or to interrupt."""
        fs, root = self.fs, self.root
        removed = []
        for shard, ids in sorted(void.items()):
            path = f"{root}/{shard}"
            try:
                table = pq.read_table(path, filesystem=fs)
            except FileNotFoundError:
                continue
            kept = table.filter(pa.compute.invert(pa.compute.is_in(table["id"], pa.array(sorted(ids), pa.string()))))
            if kept.num_rows == 0:
                fs.rm_file(path)
                removed.append(shard)
                continue
            metadata = dict(table.schema.metadata or {})
            declared = json.loads(metadata.get(KEYS_KEY.encode(), b"{}")).get("supersedes")
            self.publish(shard, _parquet_bytes(kept, metadata, declared))
        if void and fs.exists(f"{root}/{RETRYABLE_DIR}") and not fs.ls(f"{root}/{RETRYABLE_DIR}"):
            fs.rmdir(f"{root}/{RETRYABLE_DIR}")
        return removed

    def _listing(self, kind: str) -> list[tuple[str, int, str | None]]:
        """(path, size, ETag or None) of the committed shards (`part-*.parquet`) of one folder, sorted:
        one listing call."""
        try:
            entries = self.fs.ls(self.path(kind), detail=True)
        except FileNotFoundError:
            return []
        return sorted((e["name"], int(e.get("size") or 0), listing_etag(e)) for e in entries
                      if e["name"].rsplit("/", 1)[-1].startswith("part-") and e["name"].endswith(".parquet"))

    def clear(self) -> None:
        """Delete everything this pipeline writes (for --overwrite); other files are left alone."""
        for name in (TOKENS_DIR, FAILURES_DIR, RETRYABLE_DIR, TMP_DIR, RUN_RECORD_FILE, FINGERPRINT_FILE, INDEX_FILE,
                     "README.md"):
            if self.fs.exists(self.path(name)):
                self.fs.rm(self.path(name), recursive=True)

    def write_shard(self, kind: str, table: pa.Table, provenance: dict | None = None,
                    supersedes: dict[str, list[str]] | None = None) -> str:
        """Write one table as a committed shard named by its row keys; returns the shard path.
        `supersedes`: the old rows its rows replace (the supersede rule), recorded in its footer."""
        chunks = table["chunk_index"].to_pylist() if "chunk_index" in table.column_names else [0] * len(table)
        name = f"part-{shard_digest(list(zip(table['id'].to_pylist(), chunks, strict=True)))}.parquet"
        metadata = dict(table.schema.metadata or {})
        if provenance is not None:
            metadata[PROVENANCE_KEY.encode()] = json.dumps(provenance, sort_keys=True).encode()
        self.publish(f"{kind}/{name}", _parquet_bytes(table, metadata, supersedes))
        return self.path(kind, name)

    def publish(self, relative: str, data: bytes) -> None:
        """Write a file so that readers see it whole or not at all. An OS error (a full disk, a
        read-only or denied folder) is an OutputError in one line, with the path and the system's
        own words, and the temporary file is removed."""
        fs, root = self.fs, self.root
        final = f"{root}/{relative}"
        if not self.is_local:  # object stores: one PUT creates the object whole, or not at all
            try:
                fs.pipe_file(final, data)
            except OSError as error:
                raise OutputError(f"cannot write {self.url.rstrip('/')}/{relative}: {_os_words(error)}") from error
            return
        tmp = f"{root}/{TMP_DIR}/{uuid.uuid4().hex}"
        try:
            fs.makedirs(f"{root}/{TMP_DIR}", exist_ok=True)
            fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise OutputError(f"cannot write {final}: {_os_words(error)}") from error

    def read_json(self, relative: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.path(relative)))
        except FileNotFoundError:
            return None

    def write_run_record(self, run_record: dict) -> None:
        self.publish(RUN_RECORD_FILE, (json.dumps(run_record, indent=2, sort_keys=True) + "\n").encode())

    def read_run_record(self) -> dict | None:
        return self.read_json(RUN_RECORD_FILE)

    # --- the run fingerprint: a resume must not mix corpora ---
    def check_fingerprint(self, fingerprint: dict, committed_provenance: dict | None = None, *,
                          record: bool = True) -> None:
        """Record `fingerprint` on the first run (unless `record` is false: a check that writes nothing);
        refuse (OutputError) a rerun whose settings differ. An output written before fingerprints
        existed is checked against a committed shard's provenance (variant, dtype) instead."""
        recorded = self._read_fingerprint()
        if recorded is None:
            if committed_provenance:
                legacy = {key: committed_provenance.get(key) for key in ("variant", "dtype") if key in fingerprint}
                self._check_against({**fingerprint, **legacy, ID_RULE_KEY: LEGACY_ID_RULE}, fingerprint)
            if record:
                self.publish(FINGERPRINT_FILE,
                             (json.dumps(fingerprint, indent=2, sort_keys=True) + "\n").encode())
            return
        if ID_RULE_KEY in fingerprint and isinstance(recorded, dict):
            recorded = {ID_RULE_KEY: LEGACY_ID_RULE, **recorded}
        self._check_against(recorded, fingerprint)

    def _read_fingerprint(self) -> dict | None:
        """The recorded fingerprint, None when there is none; damaged content is a one-line OutputError."""
        try:
            raw = self.fs.cat_file(self.path(FINGERPRINT_FILE))
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
            fix = "Rerun with the original settings, choose another --output, or pass --overwrite to start afresh"
            if ID_RULE_KEY in differences:  # no setting brings an old rule back
                fix = ("Its ids were made by another id rule (the same audio would get a second id): choose another "
                       "--output, or pass --overwrite to start afresh")
            raise OutputError(f"{self.url} was written with other settings ({shown}); resuming would mix two "
                              f"corpora. {fix}")

    def probe_writable(self) -> None:
        """Write and delete a small file under _tmp/, so that a missing bucket, a denied PutObject or a
        read-only folder shows before any work is done: an OutputError in one line. Other errors of
        the backend (unreachable, throttled, ...) propagate: the caller knows which of them are a
        user's to fix."""
        probe = self.path(TMP_DIR, f"write-probe-{uuid.uuid4().hex}")
        try:
            if self.is_local:  # (s3fs's makedirs would create a missing bucket)
                self.fs.makedirs(self.path(TMP_DIR), exist_ok=True)
            self.fs.pipe_file(probe, b"write probe; deleted at once\n")
            self.fs.rm_file(probe)
        except PermissionError as error:
            raise OutputError(f"cannot write to output {self.url}: permission denied (for S3: s3:PutObject and "
                              "s3:DeleteObject on the prefix)") from error
        except (NotADirectoryError, FileExistsError) as error:
            raise OutputError(f"cannot create output {self.url}: a parent of it is a file") from error
        except FileNotFoundError as error:
            raise OutputError(f"cannot write to output {self.url}: "
                              f"{'no such folder' if self.is_local else 'the bucket does not exist'}") from error


def _parquet_bytes(table: pa.Table, metadata: dict, supersedes: dict[str, list[str]] | None) -> bytes:
    """The shard file: `table` with its footer (`metadata`, plus its keys and `supersedes`)."""
    keys = footer_keys(table)
    if supersedes:
        keys["supersedes"] = supersedes
    metadata = {**metadata, KEYS_KEY.encode(): json.dumps(keys, ensure_ascii=False).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer, compression="zstd")
    return buffer.getvalue()


def _os_words(error: OSError) -> str:
    """The system's own words for an OS error ("No space left on device")."""
    return error.strerror or str(error) or type(error).__name__


def _footers(pool, fs, kind: str, entries: list[tuple[str, int, str | None]],
             index: dict[str, tuple[int, str, str]]) -> list[tuple[str, dict, str | None]]:
    """(shard path relative to the output, its footer keys, their JSON text from the index or None)
    for the shards `entries` of one folder: from `index` where size and ETag match, else read."""
    def one(entry: tuple[str, int, str | None]) -> tuple[str, dict, str | None]:
        path, size, etag = entry
        shard = relative_shard(path)
        cached = index.get(shard)
        if etag and cached and cached[:2] == (size, etag):
            return shard, json.loads(cached[2]), cached[2]
        return shard, _shard_keys(fs, path, size, tokens=kind == TOKENS_DIR), None

    return list(pool.map(one, entries))


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
        summary = footer_keys(pq.read_table(path, columns=["id", "chunk_index", "num_chunks", "num_frames",
                                                            "duration_s"], filesystem=fs))
    else:
        summary = footer_keys(pq.read_table(path, columns=["id", "error_type"], filesystem=fs))
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


def tokens_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema("tokens", TOKENS_SCHEMA_VERSION))


def failures_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema("failures", FAILURES_SCHEMA_VERSION))
