"""Training-side reader: layout, validation, packing across ranks/workers, resume, Megatron export."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from jobs.export_corpus import export
from pipeline.corpus import CorpusError, PackedTokenDataset, TokenCorpus, TokenLayout
from pipeline.corpus.indexed import read_indexed
from pipeline.output import TOKENS_DIR, OutputFolder, tokens_table

PROVENANCE = {"codec": "semanticodec", "variant": "semanticodec-r100-v4096", "token_rate": 100,
              "semantic_vocab_size": 4096, "acoustic_vocab_size": 8192,
              "files": {"encoder": {"path": "x", "sha256": "a" * 64}}}


def make_corpus(folder, shards=5, clips_per_shard=6, seed=0, provenance=PROVENANCE) -> dict[tuple, tuple]:
    rng = np.random.default_rng(seed)
    output = OutputFolder(str(folder))
    docs = {}
    for s in range(shards):
        rows = []
        for c in range(clips_per_shard):
            frames = int(rng.integers(1, 90))
            sem = rng.integers(0, 4096, frames).astype(np.uint16)
            ac = rng.integers(0, 8192, frames).astype(np.uint16)
            rows.append({"id": f"s{s}c{c}", "uri": f"file:///x/s{s}c{c}.wav", "chunk_index": 0, "num_chunks": 1,
                         "chunk_start_s": 0.0, "duration_s": frames / 50, "source_sample_rate": 16000,
                         "source_channels": 1, "num_frames": frames, "semantic": sem, "acoustic": ac,
                         "labels": None, "human_labels": None})
            docs[(f"s{s}c{c}", 0)] = (sem, ac)
        output.write_shard(TOKENS_DIR, tokens_table(rows), provenance)
    return docs


def test_layouts_and_vocabulary():
    layout = TokenLayout(4096)
    assert layout.vocab_size == 4096 + 8192 + 1 and layout.special_ids == {"eos": 12288}
    np.testing.assert_array_equal(layout.flatten([1, 2], [3, 4]), [1, 4096 + 3, 2, 4096 + 4, 12288])
    both = TokenLayout(32768, layout="parallel", bos=True, eos=True)
    assert both.special_ids == {"bos": 32768, "eos": 32769} and both.vocab_size == 32770
    np.testing.assert_array_equal(both.flatten([5], [6]), [[32768, 5, 32769], [32768, 6, 32769]])
    largest = TokenLayout(32768, bos=True, sep=True)  # every codec vocabulary fits 16 bits
    assert largest.vocab_size == 32768 + 8192 + 3 and largest.dtype == np.uint16


def reconstruct(samples, layout, docs):
    """Rebuild every document from sequence pieces; check each token is covered exactly once."""
    rebuilt = {key: np.full(layout.flatten(*value).shape, -1, np.int64) for key, value in docs.items()}
    for sample in samples:
        ids = sample["input_ids"].numpy()
        for piece in sample["boundaries"]:
            target = rebuilt[(piece["id"], piece["chunk_index"])]
            window = target[..., piece["doc_start"] : piece["doc_start"] + piece["length"]]
            assert (window == -1).all(), f"token of {piece['id']} packed twice"
            window[...] = ids[..., piece["seq_start"] : piece["seq_start"] + piece["length"]]
    for key, value in docs.items():
        np.testing.assert_array_equal(rebuilt[key], layout.flatten(*value), err_msg=str(key))


@pytest.mark.parametrize("layout_name", ["interleaved", "parallel"])
def test_every_token_exactly_once_across_2_ranks_x_2_workers(tmp_path, layout_name):
    docs = make_corpus(tmp_path)
    samples, shards_seen = [], []
    for rank in range(2):
        dataset = PackedTokenDataset(str(tmp_path), seq_len=64, layout=layout_name, seed=3, rank=rank,
                                     world_size=2, shuffle_buffer=4)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2,
                                             multiprocessing_context="fork")
        got = list(loader)
        samples += got
        shards_seen.append({p["shard"] for s in got for p in s["boundaries"]})
    assert not shards_seen[0] & shards_seen[1], "two ranks read the same shard"
    layout = TokenLayout(4096, layout=layout_name)
    reconstruct(samples, layout, docs)
    full = [s for s in samples if s["input_ids"].shape[-1] == 64]
    assert len(full) >= len(samples) - 4  # at most one short tail per partition
    crossing = [s for s in samples if len({p["shard"] for p in s["boundaries"]}) > 1]
    assert crossing and all(len(s["boundaries"]) >= 2 for s in crossing)  # shard joins are recorded


def test_shuffle_is_deterministic_by_seed(tmp_path):
    make_corpus(tmp_path)

    def order(seed):
        return [p["id"] for s in PackedTokenDataset(str(tmp_path), 50, seed=seed, shuffle_buffer=8)
                for p in s["boundaries"]]

    assert order(1) == order(1) and order(1) != order(2)
    plain = [p["id"] for s in PackedTokenDataset(str(tmp_path), 50, shuffle=False) for p in s["boundaries"]]
    assert sorted(set(plain)) == sorted(set(order(1)))


def test_resume_yields_exactly_the_remaining_sequences(tmp_path):
    make_corpus(tmp_path)
    full = [s["input_ids"] for s in PackedTokenDataset(str(tmp_path), 40, seed=5, shuffle_buffer=8)]
    first = PackedTokenDataset(str(tmp_path), 40, seed=5, shuffle_buffer=8)
    iterator = iter(first)
    head = [next(iterator)["input_ids"] for _ in range(7)]
    state = json.loads(json.dumps(first.state_dict()))  # it is plain data
    restored = PackedTokenDataset(str(tmp_path), 40, seed=5, shuffle_buffer=8)
    restored.load_state_dict(state)
    rest = [s["input_ids"] for s in restored]
    assert len(head) + len(rest) == len(full)
    for a, b in zip(head + rest, full):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        PackedTokenDataset(str(tmp_path), 40, seed=6).load_state_dict(state)


def test_mixed_codecs_and_unknown_versions_are_refused(tmp_path):
    make_corpus(tmp_path, shards=2)
    other = {**PROVENANCE, "files": {"encoder": {"path": "y", "sha256": "b" * 64}}}
    make_corpus(tmp_path, shards=1, seed=9, provenance=other)
    with pytest.raises(CorpusError, match="different codec or checkpoint"):
        TokenCorpus(str(tmp_path))
    fresh = tmp_path / "v2"
    make_corpus(fresh, shards=1)
    path = next((fresh / "tokens").glob("*.parquet"))
    table = pq.read_table(path)
    meta = {**table.schema.metadata, b"pipeline.schema_version": b"2"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(CorpusError, match="version 2 is not supported"):
        TokenCorpus(str(fresh))
    with pytest.raises(CorpusError, match="no committed token shards"):
        TokenCorpus(str(tmp_path / "empty"))


@pytest.mark.parametrize("layout_name", ["interleaved", "parallel"])
def test_megatron_export_round_trip(tmp_path, layout_name):
    docs = make_corpus(tmp_path / "corpus", shards=3)
    vocab = export(str(tmp_path / "corpus"), str(tmp_path / "mega"), layout_name)
    layout = TokenLayout(4096, layout=layout_name)
    corpus = TokenCorpus(str(tmp_path / "corpus"))
    expected = [layout.flatten(d.semantic, d.acoustic) for s in corpus.shards for d in corpus.documents(s)]
    if layout_name == "interleaved":
        got = read_indexed(tmp_path / "mega" / "tokens")
        assert [g.dtype for g in got][0] == np.uint16
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e)
    else:
        for stream, name in enumerate(("semantic", "acoustic")):
            for g, e in zip(read_indexed(tmp_path / "mega" / name), expected, strict=True):
                np.testing.assert_array_equal(g, e[stream])
    described = json.loads((tmp_path / "mega" / "vocab.json").read_text())
    assert described["vocab_size"] == layout.vocab_size and described["documents"] == len(docs) == vocab["documents"]
    assert described["codec"]["variant"] == "semanticodec-r100-v4096"
