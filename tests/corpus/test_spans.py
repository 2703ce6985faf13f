"""Spans in the training reader and the export (issue 18): every document says which span of which
source object it covers, chunks of one file are recognised as consecutive parts, and files
written before spans (tokens schema minor < 2) still read, with unknown spans."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.corpus import PackedTokenDataset, TokenCorpus
from pipeline.corpus.export import export
from pipeline.output.folder import PROVENANCE_KEY, TOKENS_DIR, OutputFolder, tokens_table
from pipeline.output.schema import TOKENS_SCHEMA_VERSION, arrow_schema

PROVENANCE = {"codec": "semanticodec", "variant": "semanticodec-r100-v4096", "token_rate": 100,
              "semantic_vocab_size": 4096, "acoustic_vocab_size": 8192,
              "files": {"encoder": {"path": "x", "sha256": "a" * 64}}}


def row(id, uri, chunk, chunks, start, duration, frames=5, **extra) -> dict:
    return {"id": id, "uri": uri, "chunk_index": chunk, "num_chunks": chunks, "chunk_start_s": start - extra.pop("offset", 0.0),
            "duration_s": duration, "source_start_s": start, "source_end_s": start + duration, "source_sample_rate": 16000,
            "source_channels": 1, "num_frames": frames, "semantic": np.arange(frames, dtype=np.uint16),
            "acoustic": np.arange(frames, dtype=np.uint16), **extra}


def test_documents_carry_their_span_and_chunks_are_consecutive(tmp_path):
    output = OutputFolder(str(tmp_path / "tokens"))
    output.write_shard(TOKENS_DIR, tokens_table([
        row("long", "/data/long.wav", 0, 2, 0.0, 307.2), row("long", "/data/long.wav", 1, 2, 307.2, 12.8),
        row("seg", "/data/long.wav", 0, 1, 200.0, 10.0, offset=200.0),
    ]), PROVENANCE)
    corpus = TokenCorpus(str(tmp_path / "tokens"))
    [shard] = corpus.shards
    docs = {(d.id, d.chunk_index): d for d in corpus.documents(shard)}
    first, second, segment = docs[("long", 0)], docs[("long", 1)], docs[("seg", 0)]
    assert (segment.uri, segment.source_start_s, segment.source_end_s) == ("/data/long.wav", 200.0, 210.0)
    assert (second.num_chunks, second.source_start_s, second.source_end_s) == (2, 307.2, 320.0)
    assert second.continues(first) and not first.continues(second) and not segment.continues(first)
    boundaries = [b for sample in PackedTokenDataset(corpus, seq_len=64, shuffle=False) for b in sample["boundaries"]]
    assert {(b["id"], b["source_start_s"], b["source_end_s"]) for b in boundaries} == {
        ("long", 0.0, 307.2), ("long", 307.2, 320.0), ("seg", 200.0, 210.0)}

    vocab = export(str(tmp_path / "tokens"), str(tmp_path / "export"))
    lines = [json.loads(line) for line in (tmp_path / "export" / vocab["documents_index"]).read_text().splitlines()]
    assert len(lines) == vocab["documents"] == 3
    assert {(d["id"], d["chunk_index"], d["uri"], d["source_start_s"], d["source_end_s"]) for d in lines} == {
        ("long", 0, "/data/long.wav", 0.0, 307.2), ("long", 1, "/data/long.wav", 307.2, 320.0),
        ("seg", 0, "/data/long.wav", 200.0, 210.0)}


def test_files_written_before_spans_still_read(tmp_path):
    """A shard of tokens schema minor 1 (no span columns): documents read, their spans unknown."""
    minor_1 = pa.schema([f for f in arrow_schema("tokens", TOKENS_SCHEMA_VERSION)
                         if f.name not in ("source_start_s", "source_end_s")],
                        metadata={"pipeline.schema": "tokens", "pipeline.schema_version": "1",
                                  PROVENANCE_KEY: json.dumps(PROVENANCE)})
    record = row("old", "/x.wav", 0, 1, 0.0, 1.0)
    del record["source_start_s"], record["source_end_s"]
    (tmp_path / "tokens" / TOKENS_DIR).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([record], schema=minor_1), tmp_path / "tokens" / TOKENS_DIR / "part-old.parquet")
    corpus = TokenCorpus(str(tmp_path / "tokens"))
    [doc] = list(corpus.documents(corpus.shards[0]))
    assert (doc.id, doc.uri, doc.source_start_s, doc.source_end_s) == ("old", "/x.wav", None, None)
