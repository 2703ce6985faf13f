"""Export a token output to Megatron-LM / GPT-NeoX indexed binary files.

    python jobs/export_corpus.py --tokens OUT --output DIR [--layout interleaved|parallel] [--bos] [--no-eos]

Writes DIR/tokens.{bin,idx} (interleaved) or DIR/semantic.{bin,idx} + DIR/acoustic.{bin,idx}
(parallel), one sequence per clip (chunk) in shard order, DIR/vocab.json describing the id
layout, special tokens and the codec provenance, and DIR/documents.jsonl: line k says where
sequence k comes from (id, chunk_index, num_chunks, uri, source_start_s, source_end_s: the span of
the object at uri it covers, null in files written before spans). --tokens may be local or any
fsspec URL. Inputs that are not complete (a chunk missing, or a failure recorded) are left out and
counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UserError
from ..redaction import redact, terminal_line
from .indexed import IndexedWriter
from .layout import LAYOUTS, TokenLayout
from .reader import TokenCorpus

SUMMARY_KEYS = ("layout", "vocab_size", "dtype", "documents", "tokens", "files", "left_out")
DOCUMENTS_FILE = "documents.jsonl"
SHOWN_IDS = 5


def export(tokens: str, output: str, layout_name: str = "interleaved", bos: bool = False, eos: bool = True,
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
                for writer, stream in zip(writers, ids if layout_name == "parallel" else [ids]):
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


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):
        return action.help + " (required)" if action.required else super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    cli.add_argument("--tokens", required=True, help="token output folder of a tokenize run (local or fsspec URL)")
    cli.add_argument("--output", required=True, help="folder for the .bin/.idx files and vocab.json")
    cli.add_argument("--layout", default="interleaved", choices=LAYOUTS,
                     help="interleaved: [s0, a0, s1, a1, ...] in one vocabulary; parallel: two aligned streams")
    cli.add_argument("--bos", action="store_true", help="start each clip with a BOS token")
    cli.add_argument("--no-eos", action="store_true", help="do not end each clip with an EOS token")
    return cli


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        vocab = export(args.tokens, args.output, args.layout, args.bos, not args.no_eos)
    except UserError as error:
        print(terminal_line(f"error: {error}"), file=sys.stderr)
        return 1
    print(json.dumps({k: vocab[k] for k in SUMMARY_KEYS}, indent=2))
    return 0
