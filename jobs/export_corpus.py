"""Export a token output to Megatron-LM / GPT-NeoX indexed binary files.

    python jobs/export_corpus.py --tokens OUT --output DIR [--layout interleaved|parallel] [--bos] [--no-eos]

Writes DIR/tokens.{bin,idx} (interleaved) or DIR/semantic.{bin,idx} + DIR/acoustic.{bin,idx}
(parallel), one sequence per clip (chunk) in shard order, and DIR/vocab.json describing the id
layout, special tokens and the codec provenance. --tokens may be local or any fsspec URL.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.corpus import TokenCorpus, TokenLayout  # noqa: E402
from pipeline.corpus.indexed import IndexedWriter  # noqa: E402


def export(tokens: str, output: str, layout_name: str = "interleaved", bos: bool = False, eos: bool = True) -> dict:
    corpus = TokenCorpus(tokens)
    layout = TokenLayout(corpus.semantic_vocab_size, corpus.acoustic_vocab_size, layout_name, bos, eos)
    out = Path(output)
    names = ["tokens"] if layout_name == "interleaved" else ["semantic", "acoustic"]
    writers = [IndexedWriter(out / name, layout.dtype) for name in names]
    documents = total = 0
    for shard in corpus.shards:
        for doc in corpus.documents(shard):
            ids = layout.flatten(doc.semantic, doc.acoustic)
            for writer, stream in zip(writers, ids if layout_name == "parallel" else [ids]):
                writer.add(stream)
            documents += 1
            total += ids.size
    for writer in writers:
        writer.close()
    vocab = {**layout.describe(), "files": [f"{n}.bin" for n in names], "documents": documents, "tokens": total,
             "codec": corpus.provenance, "source": tokens}
    (out / "vocab.json").write_text(json.dumps(vocab, indent=2) + "\n")
    return vocab


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--layout", default="interleaved", choices=("interleaved", "parallel"))
    parser.add_argument("--bos", action="store_true")
    parser.add_argument("--no-eos", action="store_true")
    args = parser.parse_args(argv)
    vocab = export(args.tokens, args.output, args.layout, args.bos, not args.no_eos)
    print(json.dumps({k: vocab[k] for k in ("layout", "vocab_size", "dtype", "documents", "tokens", "files")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
