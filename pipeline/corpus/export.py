"""Export a token output to Megatron-LM / GPT-NeoX indexed binary files.

    python jobs/export_corpus.py --tokens OUT --output DIR [--layout interleaved|parallel] [--bos] [--no-eos]
    semanticodec-export --tokens s3://bucket/tokens/run1 --output DIR --s3-endpoint-url URL

Writes DIR/tokens.{bin,idx} (interleaved) or DIR/semantic.{bin,idx} + DIR/acoustic.{bin,idx}
(parallel), one sequence per clip (chunk) in shard order, DIR/vocab.json describing the id
layout, special tokens and the codec provenance, and DIR/documents.jsonl: line k says where
sequence k comes from (id, chunk_index, num_chunks, uri, source_start_s, source_end_s: the span of
the object at uri it covers, null in files written before spans). --tokens may be local or any
fsspec URL (the S3 options are those of the tokenize job). Inputs that are not complete (a chunk
missing, or a failure recorded) are left out and counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UserError
from ..redaction import redact, terminal_line
from .indexed import IndexedWriter
from .layout import LayoutName, TokenLayout
from .reader import TokenCorpus

SUMMARY_KEYS = ("layout", "vocab_size", "dtype", "documents", "tokens", "files", "left_out")
DOCUMENTS_FILE = "documents.jsonl"
SHOWN_IDS = 5


def export(tokens: str, output: str, layout_name: LayoutName = "interleaved", bos: bool = False, eos: bool = True,
           storage_options: dict | None = None) -> dict:
    """Write the indexed files and vocab.json; returns the vocab.json content."""
    corpus = TokenCorpus(tokens, storage_options)
    layout = TokenLayout(corpus.semantic_vocab_size, corpus.acoustic_vocab_size, layout_name, bos, eos)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {output} is a file; give a folder for the .bin/.idx files")
    names = ["tokens"] if layout_name == "interleaved" else ["semantic", "acoustic"]
    writers = [IndexedWriter(out / name, layout.dtype) for name in names]
    documents = total = 0
    with open(out / DOCUMENTS_FILE, "w", encoding="utf-8") as where:
        for shard in corpus.shards:
            for doc in corpus.documents(shard):
                ids = layout.flatten(doc.semantic, doc.acoustic)
                for writer, stream in zip(writers, ids if layout_name == "parallel" else [ids], strict=True):
                    writer.add(stream)
                where.write(json.dumps({"id": doc.id, "chunk_index": doc.chunk_index, "num_chunks": doc.num_chunks,
                                        "uri": doc.uri, "source_start_s": doc.source_start_s,
                                        "source_end_s": doc.source_end_s}, ensure_ascii=False) + "\n")
                documents += 1
                total += ids.size
    for writer in writers:
        writer.close()
    left_out = {"incomplete_ids": len(corpus.index.incomplete_ids), "duplicate_rows": corpus.index.duplicate_rows}
    vocab = {**layout.describe(), "files": [f"{n}.bin" for n in names], "documents_index": DOCUMENTS_FILE,
             "documents": documents, "tokens": total,
             "left_out": left_out, "codec": corpus.provenance, "source": redact(tokens)}
    (out / "vocab.json").write_text(json.dumps(vocab, indent=2) + "\n")
    if corpus.index.incomplete_ids:
        shown = ", ".join(repr(i) for i in corpus.index.incomplete_ids[:SHOWN_IDS])
        print(terminal_line(f"left out {len(corpus.index.incomplete_ids)} incomplete inputs (a chunk missing or a "
                            f"failure recorded; a rerun of the tokenize job completes them): {shown}"), file=sys.stderr)
    return vocab
