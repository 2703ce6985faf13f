"""Whole-corpus token statistics, computed from the Parquet shards without decoding any audio.

Everything streams over the shards record batch by record batch (pyarrow), so memory is bounded
by one batch plus per-token-id counters (65 536 per stream: ids are uint16) and the lists of
anomalous rows (capped at `max_listed`, counts are always exact).

Per stream (semantic, acoustic): codebook utilisation (ids used / vocabulary), entropy in bits
and perplexity (2**entropy) of the id distribution, the most frequent ids, ids out of the
vocabulary. Per row: degenerate rows (one id repeated over the whole row, in either stream),
length mismatches, out-of-vocabulary ids. Corpus: token pairs per second vs the expected
token_rate / 2.

Expected length of a row: the naive `round(duration_s * frame_rate)` is reported, but the check
uses the pipeline's own rule (`row_token_count` in the codec's lengths.py): an inner chunk keeps
exactly its whole windows' pairs, a last or only chunk follows the official SemantiCodec trimming,
which rounds the duration up to the next 0.16 s patch (a 1.0 s clip has 57 pairs at rate 100, not
50). A row is a length mismatch when `num_frames` is more than 1 frame off that count, or when
len(semantic) or len(acoustic) differs from `num_frames`.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..codecs.semanticodec.lengths import row_token_count
from ..fsutil import protocol_of
from ..output.folder import PROVENANCE_KEY
from ..output.schema import FAILURES_SCHEMA_VERSION, TOKENS_SCHEMA_VERSION, check_table_version
from ..sources.uris import is_member_uri

STREAMS = ("semantic", "acoustic")
ID_SPACE = 1 << 16  # token ids are uint16
SCAN_COLUMNS = ["id", "uri", "chunk_index", "num_chunks", "duration_s", "num_frames", "semantic", "acoustic"]
MIN_DEGENERATE_FRAMES = 8  # shorter rows (a 0.05 s click) may legitimately repeat one id
RATE_BINS = 40


def shard_name(path: str) -> str:
    return posixpath.basename(path)


def read_provenance(fs, path: str) -> tuple[dict, str | None]:
    """(provenance dict, error) of one shard from its Parquet metadata."""
    try:
        metadata = pq.read_schema(path, filesystem=fs).metadata or {}
        check_table_version(metadata, "tokens", TOKENS_SCHEMA_VERSION)
    except Exception as error:  # noqa: BLE001 - reported: unreadable file, another table, unknown version
        return {}, f"{type(error).__name__}: {error}"
    try:
        return json.loads(metadata.get(PROVENANCE_KEY.encode(), b"{}")), None
    except ValueError as error:
        return {}, f"bad {PROVENANCE_KEY} metadata: {error}"


@dataclass
class TokenStats:
    semantic_vocab_size: int
    acoustic_vocab_size: int
    token_rate: int
    max_listed: int = 200
    counts: dict = field(default_factory=lambda: {s: np.zeros(ID_SPACE, np.int64) for s in STREAMS})
    rows: int = 0
    frames: int = 0
    expected_frames: int = 0
    duration_s: float = 0.0
    shards_scanned: int = 0
    unreadable_shards: list = field(default_factory=list)
    degenerate: list = field(default_factory=list)
    degenerate_count: int = 0
    mismatches: list = field(default_factory=list)
    mismatch_count: int = 0
    oov: list = field(default_factory=list)
    oov_rows: int = 0
    oov_tokens: dict = field(default_factory=lambda: {s: 0 for s in STREAMS})
    empty_rows: int = 0
    rate_hist: np.ndarray = field(default_factory=lambda: np.zeros(RATE_BINS, np.int64))
    uris: dict = field(default_factory=dict)  # uri → first row key + row count

    @property
    def frame_rate(self) -> float:
        return self.token_rate / 2

    def vocab(self, stream: str) -> int:
        return self.semantic_vocab_size if stream == "semantic" else self.acoustic_vocab_size

    def rate_bin_edges(self) -> np.ndarray:
        return np.linspace(0.0, 2.0 * self.frame_rate, RATE_BINS + 1)

    def _listed(self, target: list, item: dict) -> None:
        if len(target) < self.max_listed:
            target.append(item)

    def stream_summary(self, stream: str, top_k: int = 20) -> dict:
        counts = self.counts[stream]
        vocab = self.vocab(stream)
        in_vocab = counts[:vocab]
        total = int(counts.sum())
        used = int((in_vocab > 0).sum())
        p = in_vocab[in_vocab > 0] / max(int(in_vocab.sum()), 1)
        entropy = float(-(p * np.log2(p)).sum()) if p.size else 0.0
        order = np.argsort(-counts, kind="stable")[:top_k]
        top = [{"id": int(i), "count": int(counts[i]), "fraction": float(counts[i] / total) if total else 0.0}
               for i in order if counts[i] > 0]
        oov_ids = np.nonzero(counts[vocab:])[0] + vocab
        return {
            "vocab_size": vocab,
            "tokens": total,
            "distinct_ids": used,
            "utilisation": used / vocab,
            "entropy_bits": entropy,
            "max_entropy_bits": math.log2(vocab),
            "normalised_entropy": entropy / math.log2(vocab),
            "perplexity": float(2.0 ** entropy),
            "top_tokens": top,
            "out_of_vocab_tokens": int(counts[vocab:].sum()),
            "out_of_vocab_ids": [int(i) for i in oov_ids[:50]],
        }

    def to_dict(self) -> dict:
        measured = self.frames / self.duration_s if self.duration_s > 0 else None
        edges = self.rate_bin_edges()
        return {
            "shards": self.shards_scanned,
            "rows": self.rows,
            "frames": self.frames,
            "tokens": 2 * self.frames,
            "duration_s": self.duration_s,
            "audio_hours": self.duration_s / 3600,
            "tokens_per_second": {
                "measured_pairs_per_s": measured,
                "expected_pairs_per_s": self.frame_rate,
                "ratio_to_expected": measured / self.frame_rate if measured is not None else None,
                "expected_frames_with_official_trim": self.expected_frames,
                "ratio_to_trim_aware_expected": self.frames / self.expected_frames if self.expected_frames else None,
                "note": "the official encoder rounds each clip up to the next 0.16 s patch, so short clips "
                        "carry more than token_rate/2 pairs per second; the trim-aware ratio should be 1",
                "per_row_histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in self.rate_hist]},
            },
            "streams": {s: self.stream_summary(s) for s in STREAMS},
            "degenerate_rows": {"count": self.degenerate_count, "min_frames": MIN_DEGENERATE_FRAMES,
                                "rows": self.degenerate},
            "length_mismatches": {"count": self.mismatch_count, "rows": self.mismatches},
            "out_of_vocab_rows": {"count": self.oov_rows, "tokens": dict(self.oov_tokens), "rows": self.oov},
            "empty_rows": self.empty_rows,
            "unreadable_shards": self.unreadable_shards,
            "max_listed": self.max_listed,
        }


def _row_min_max(values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row min and max of a flattened list column (-1 for empty rows)."""
    rows = len(lengths)
    low, high = np.full(rows, -1, np.int64), np.full(rows, -1, np.int64)
    nonempty = lengths > 0
    if nonempty.any():
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
        low[nonempty] = np.minimum.reduceat(values, starts)
        high[nonempty] = np.maximum.reduceat(values, starts)
    return low, high


def _list_column(batch, name: str) -> tuple[np.ndarray, np.ndarray]:
    column = batch.column(name)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, lengths


def scan_batch(stats: TokenStats, batch, shard: str, first_row: int) -> None:
    """Add one record batch of a tokens shard to `stats`."""
    ids = batch.column("id").to_pylist()
    uris = batch.column("uri").to_pylist()
    chunk = batch.column("chunk_index").to_numpy(zero_copy_only=False)
    chunks = batch.column("num_chunks").to_numpy(zero_copy_only=False)
    duration = batch.column("duration_s").to_numpy(zero_copy_only=False).astype(np.float64)
    num_frames = batch.column("num_frames").to_numpy(zero_copy_only=False).astype(np.int64)
    per_stream = {}
    for stream in STREAMS:
        values, lengths = _list_column(batch, stream)
        stats.counts[stream] += np.bincount(values, minlength=ID_SPACE)[:ID_SPACE]
        per_stream[stream] = (values, lengths, *_row_min_max(values, lengths))
    sem_len, ac_len = per_stream["semantic"][1], per_stream["acoustic"][1]
    stats.rows += batch.num_rows
    stats.frames += int(sem_len.sum())
    stats.duration_s += float(duration.sum())
    positive = duration > 0
    rates = np.clip(sem_len[positive] / duration[positive], 0, 2 * stats.frame_rate - 1e-9)
    stats.rate_hist += np.histogram(rates, bins=stats.rate_bin_edges())[0]
    for i in range(batch.num_rows):
        key = {"id": ids[i], "chunk_index": int(chunk[i]), "shard": shard, "row": first_row + i}
        uri = uris[i] or ""
        seen = stats.uris.get(uri)
        if seen is None:
            stats.uris[uri] = {**key, "rows": 1}
        else:
            seen["rows"] += 1
        expected = row_token_count(float(duration[i]), int(chunk[i]), int(chunks[i]), stats.token_rate)
        stats.expected_frames += expected
        n = int(num_frames[i])
        reasons = []
        if sem_len[i] != n:
            reasons.append(f"len(semantic)={int(sem_len[i])} != num_frames={n}")
        if ac_len[i] != n:
            reasons.append(f"len(acoustic)={int(ac_len[i])} != num_frames={n}")
        if abs(n - expected) > 1:
            reasons.append(f"num_frames={n} but {float(duration[i]):.3f} s gives {expected} (official trim)")
        if reasons:
            stats.mismatch_count += 1
            stats._listed(stats.mismatches, {
                **key, "num_frames": n, "len_semantic": int(sem_len[i]), "len_acoustic": int(ac_len[i]),
                "duration_s": float(duration[i]), "expected_frames": expected,
                "naive_expected_frames": round(float(duration[i]) * stats.frame_rate), "reasons": reasons,
            })
        if sem_len[i] == 0 and ac_len[i] == 0:
            stats.empty_rows += 1
        constant = [s for s in STREAMS
                    if per_stream[s][1][i] >= MIN_DEGENERATE_FRAMES and per_stream[s][2][i] == per_stream[s][3][i]]
        if constant:
            stats.degenerate_count += 1
            stats._listed(stats.degenerate, {
                **key, "num_frames": n, "streams": constant,
                "constant_ids": {s: int(per_stream[s][2][i]) for s in constant},
            })
        bad = {s: int(per_stream[s][3][i]) for s in STREAMS if per_stream[s][3][i] >= stats.vocab(s)}
        if bad:
            stats.oov_rows += 1
            stats._listed(stats.oov, {**key, "num_frames": n, "max_ids": bad,
                                      "vocab_sizes": {s: stats.vocab(s) for s in bad}})
    for stream in STREAMS:
        values = per_stream[stream][0]
        stats.oov_tokens[stream] += int((values >= stats.vocab(stream)).sum())


def scan_tokens(fs, shards: list[str], *, semantic_vocab_size: int, acoustic_vocab_size: int, token_rate: int,
                max_listed: int = 200, batch_size: int = 1024) -> TokenStats:
    """Stream every shard once; unreadable shards are listed, not fatal."""
    stats = TokenStats(semantic_vocab_size, acoustic_vocab_size, token_rate, max_listed=max_listed)
    for path in shards:
        name = shard_name(path)
        try:
            with fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                check_table_version(parquet.schema_arrow.metadata, "tokens", TOKENS_SCHEMA_VERSION)
                first = 0
                for batch in parquet.iter_batches(batch_size=batch_size, columns=SCAN_COLUMNS):
                    scan_batch(stats, batch, name, first)
                    first += batch.num_rows
            stats.shards_scanned += 1
        except Exception as error:  # noqa: BLE001 - a corrupt shard is reported, the rest is still scanned
            stats.unreadable_shards.append({"shard": name, "error": f"{type(error).__name__}: {error}"})
    return stats


# --- uris ---

def classify_uri(uri: str) -> str | None:
    """Problem of a uri that can be told without I/O, None when it looks fetchable."""
    import fsspec

    if not uri:
        return "empty"
    if is_member_uri(uri):
        return "archive_member"
    if protocol_of(uri) not in fsspec.available_protocols():
        return "unsupported_protocol"
    return None


def check_uris(uris: dict[str, dict], storage_options: dict | None = None, *, max_listings: int = 256,
               max_listed: int = 200) -> dict:
    """Which uris point at nothing. One directory listing per parent folder (not one request per
    file), for up to `max_listings` folders; uris beyond that are counted as unchecked.
    `#` uris (tar members, Parquet rows) cannot be fetched directly: counted, not an error."""
    from ..fsutil import url_to_fs

    problems, archive, unchecked = [], 0, 0
    count = 0
    by_parent: dict[str, list[str]] = {}
    for uri, key in uris.items():
        kind = classify_uri(uri)
        if kind == "archive_member":
            archive += key["rows"]
        elif kind is not None:
            count += key["rows"]
            if len(problems) < max_listed:
                problems.append({**key, "uri": uri, "status": kind})
        else:
            by_parent.setdefault(uri.rstrip("/").rsplit("/", 1)[0] if "/" in uri else ".", []).append(uri)
    for listed, (parent, members) in enumerate(sorted(by_parent.items())):
        if listed >= max_listings:
            unchecked += sum(uris[u]["rows"] for u in members)
            continue
        try:
            fs, path = url_to_fs(parent, storage_options)
            names = {n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(path, detail=False)}
        except FileNotFoundError:
            names = set()
        except Exception:  # noqa: BLE001 - no permission to list, odd filesystem: one check per file
            names = None
        for uri in members:
            if names is None:
                try:
                    fs, path = url_to_fs(uri, storage_options)
                    exists = fs.exists(path)
                except Exception:  # noqa: BLE001 - counted as unchecked in the report
                    unchecked += uris[uri]["rows"]
                    continue
            else:
                exists = uri.rstrip("/").rsplit("/", 1)[-1] in names
            if not exists:
                count += uris[uri]["rows"]
                if len(problems) < max_listed:
                    problems.append({**uris[uri], "uri": uri, "status": "missing"})
    return {"count": count, "rows": problems, "archive_member_rows": archive, "unchecked_rows": unchecked,
            "distinct_uris": len(uris)}


# --- failures/ ---

def failure_stats(fs, shards: list[str], *, max_listed: int = 50) -> dict:
    by_type: Counter = Counter()
    by_stage: Counter = Counter()
    examples, unreadable, total = [], [], 0
    for path in shards:
        try:
            table = pq.read_table(path, columns=["id", "uri", "stage", "error_type", "message"], filesystem=fs)
            check_table_version(table.schema.metadata, "failures", FAILURES_SCHEMA_VERSION)
        except Exception as error:  # noqa: BLE001 - an unreadable failures shard is reported
            unreadable.append({"shard": shard_name(path), "error": f"{type(error).__name__}: {error}"})
            continue
        for row in table.to_pylist():
            total += 1
            by_type[row["error_type"]] += 1
            by_stage[row["stage"]] += 1
            if len(examples) < max_listed:
                examples.append({k: row[k] for k in ("id", "uri", "stage", "error_type", "message")})
    return {"count": total, "by_type": dict(sorted(by_type.items())), "by_stage": dict(sorted(by_stage.items())),
            "examples": examples, "shards": len(shards), "unreadable_shards": unreadable}
