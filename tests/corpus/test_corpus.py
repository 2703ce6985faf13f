"""Training-side reader: layout, validation, packing across ranks/workers, resume, Megatron export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.cli.export import export_main
from pipeline.corpus import CorpusError, PackedTokenDataset, TokenCorpus, TokenLayout
from pipeline.corpus.export import export
from pipeline.corpus.indexed import read_indexed
from pipeline.output.folder import (
    FAILURES_DIR,
    PROVENANCE_KEY,
    TOKENS_DIR,
    OutputFolder,
    failures_table,
    tokens_table,
)
from pipeline.output.schema import TOKENS_SCHEMA_VERSION, arrow_schema

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
    for a, b in zip(head + rest, full, strict=True):
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


# --- complete documents only (issue 12 case 6) ---

def write_raw_shard(folder, name, rows, provenance=PROVENANCE):
    """A token shard written with pyarrow directly (the committed layout, no pipeline writer)."""
    schema = arrow_schema("tokens", TOKENS_SCHEMA_VERSION)
    full = [{"uri": f"file:///x/{r['id']}.wav", "chunk_start_s": 0.0, "duration_s": 0.1, "source_sample_rate": 16000,
             "source_channels": 1, "labels": None, "human_labels": None, **r} for r in rows]
    metadata = {**schema.metadata, PROVENANCE_KEY.encode(): json.dumps(provenance).encode()}
    table = pa.Table.from_pylist(full, schema=schema).replace_schema_metadata(metadata)
    (folder / TOKENS_DIR).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / TOKENS_DIR / f"part-{name}.parquet")


def chunk(key, index, total, frames=5):
    base = (sum(map(ord, key)) * 31 + index * 7) % 4000
    sem = np.arange(base, base + frames, dtype=np.uint16)
    return {"id": key, "chunk_index": index, "num_chunks": total, "num_frames": frames, "semantic": sem,
            "acoustic": sem + 1}


def make_partial_corpus(folder):
    """whole: 1/1; tail: 2/2 across two shards; dup: 1/1 committed twice; long: chunks 0,1 of 3
    (the source failed part-way); failed: 2/2 committed but also a failure row."""
    write_raw_shard(folder, "a", [chunk("whole", 0, 1), chunk("long", 0, 3), chunk("long", 1, 3),
                                  chunk("failed", 0, 2)])
    write_raw_shard(folder, "b", [chunk("failed", 1, 2), chunk("dup", 0, 1), chunk("tail", 1, 2)])
    write_raw_shard(folder, "c", [chunk("dup", 0, 1), chunk("tail", 0, 2)])
    OutputFolder(str(folder)).write_shard(FAILURES_DIR, failures_table(
        [{"id": "failed", "uri": "file:///x/failed.wav", "stage": "read", "error_type": "OSError", "message": "gone"}]))
    keys = [("whole", 0), ("dup", 0), ("tail", 0), ("tail", 1)]
    return {key: (chunk(*key, total=2 if key[0] == "tail" else 1)["semantic"],
                  chunk(*key, total=1)["acoustic"]) for key in keys}


def test_incomplete_inputs_are_never_emitted(tmp_path):
    docs = make_partial_corpus(tmp_path / "corpus")
    vocab = export(str(tmp_path / "corpus"), str(tmp_path / "mega"))
    assert vocab["documents"] == len(read_indexed(tmp_path / "mega" / "tokens")) == 4  # was 9: orphans, twice dup
    assert vocab["left_out"] == {"incomplete_ids": 2, "duplicate_rows": 1}

    corpus = TokenCorpus(str(tmp_path / "corpus"))
    assert corpus.incomplete_ids == ("failed", "long")
    assert corpus.index.duplicate_rows == 1 and corpus.index.documents == 3 and corpus.index.rows == 4
    emitted = [(d.id, d.chunk_index) for s in corpus.shards for d in corpus.documents(s)]
    assert sorted(emitted) == sorted(docs)  # each complete chunk once; no orphan, no duplicate

    layout = TokenLayout(4096)
    samples = list(PackedTokenDataset(str(tmp_path / "corpus"), seq_len=7, seed=1, shuffle_buffer=2))
    reconstruct(samples, layout, docs)  # raises on any token of an orphan chunk or a duplicate


def test_codec_identity_is_the_shared_rule(tmp_path):
    """Mixed means another variant or other encoder/codebook weights, not another location or decoder."""
    base = {**PROVENANCE, "synthetic_weights": False,
            "files": {"encoder": {"path": "hf://a/enc", "sha256": "a" * 64},
                      "semantic_codebook": {"path": "hf://a/cb", "sha256": "c" * 64},
                      "decoder": {"path": "hf://a/dec", "sha256": "d" * 64}}}
    moved = {**base, "checkpoint": "s3://mirror/semanticodec",
             "files": {"encoder": {"path": "s3://m/enc", "sha256": "a" * 64},
                       "semantic_codebook": {"path": "s3://m/cb", "sha256": "c" * 64},
                       "decoder": {"path": "s3://m/dec", "sha256": "e" * 64}}}
    write_raw_shard(tmp_path / "same", "a", [chunk("x", 0, 1)], base)
    write_raw_shard(tmp_path / "same", "b", [chunk("y", 0, 1)], moved)
    assert TokenCorpus(str(tmp_path / "same")).index.documents == 2
    other_codebook = {**base, "files": {**base["files"], "semantic_codebook": {"path": "x", "sha256": "f" * 64}}}
    for name, other in (("codebook", other_codebook), ("synthetic", {**base, "synthetic_weights": True})):
        write_raw_shard(tmp_path / name, "a", [chunk("x", 0, 1)], base)
        write_raw_shard(tmp_path / name, "b", [chunk("y", 0, 1)], other)
        with pytest.raises(CorpusError, match="different codec or checkpoint"):
            TokenCorpus(str(tmp_path / name))


# --- resumable iteration with DataLoader workers (issue 13) ---

def readme_training_snippet() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Training on it", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_training_snippet_resumes_exactly_with_2_workers(tmp_path, monkeypatch):
    """The README's code, run as written (smaller numbers, samples recorded): save after N
    sequences with 2 workers, resume in a new loader, and the whole equals one uninterrupted run."""
    make_corpus(tmp_path / "OUT", shards=7)
    code = readme_training_snippet()
    substitutions = {'"OUT"': repr(str(tmp_path / "OUT")), "seq_len=4096": "seq_len=40",
                     "num_workers=4": "num_workers=2", "step == 1000": "step == 12",
                     "    ...\n": "    seen.append(sample['input_ids'])\n",
                     "for sample in loader: ...": "for sample in loader: seen.append(sample['input_ids'])"}
    for old, new in substitutions.items():
        assert old in code, f"README snippet changed: {old!r} not found; update this test"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    seen: list = []
    exec(compile(code, "README.md", "exec"), {"seen": seen})
    assert (tmp_path / "loader.pt").is_file()

    uninterrupted = [s["input_ids"] for s in torch.utils.data.DataLoader(
        PackedTokenDataset(str(tmp_path / "OUT"), seq_len=40, seed=0), batch_size=None, num_workers=2)]
    assert len(seen) == len(uninterrupted) > 13
    for a, b in zip(seen, uninterrupted, strict=True):
        assert torch.equal(a, b)


def test_a_restored_position_applies_to_one_pass_only(tmp_path):
    make_corpus(tmp_path)
    dataset = PackedTokenDataset(str(tmp_path), 40, seed=5, shuffle_buffer=8)
    full = [s["input_ids"] for s in dataset]
    dataset.load_state_dict({"seed": 5, "epoch": 0, "sequences": {"0": 3}})
    assert len(list(dataset)) == len(full) - 3
    again = [s["input_ids"] for s in dataset]  # the next pass starts from the beginning
    assert len(again) == len(full) and all(torch.equal(a, b) for a, b in zip(again, full, strict=True))
    dataset.set_epoch(1)
    assert [s["input_ids"].shape for s in dataset] and dataset.state_dict()["epoch"] == 1

    ranked = PackedTokenDataset(str(tmp_path), 40, seed=5, rank=1, world_size=2)
    iterator = iter(ranked)
    next(iterator)
    state = ranked.state_dict()
    assert state["partitions"] == 2 and state["sequences"] == {1: 1}
    single = PackedTokenDataset(str(tmp_path), 40, seed=5)
    single.load_state_dict(state)
    with pytest.raises(ValueError, match="saved with 2 partitions"):
        next(iter(single))


# --- export_corpus command line ---

def test_export_cli_user_errors_are_one_line(tmp_path, capsys):
    script = Path(__file__).resolve().parents[2] / "jobs" / "export_corpus.py"
    missing = subprocess.run([sys.executable, str(script), "--tokens", str(tmp_path / "nothing"), "--output",
                              str(tmp_path / "m")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "no committed token shards" in missing.stderr

    write_raw_shard(tmp_path / "mixed", "a", [chunk("x", 0, 1)])
    write_raw_shard(tmp_path / "mixed", "b", [chunk("y", 0, 1)],
                    {**PROVENANCE, "files": {"encoder": {"path": "y", "sha256": "b" * 64}}})
    assert export_main(["--tokens", str(tmp_path / "mixed"), "--output", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "different codec or checkpoint" in err


def test_export_cli_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exited:
        export_main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--tokens", "--output", "--layout", "--bos", "--eos, --no-eos", "--s3-endpoint-url"):
        described = shown.split(f"  {option}", 1)[1].split("\n  --", 1)[0]
        assert "(default:" in described or "(required)" in described, option


def test_export_cli_reads_tokens_from_s3_with_the_tokenize_jobs_options(tmp_path, capsys, monkeypatch):
    """The export job's command line is generated like the tokenize job's, S3 options included: a
    corpus in a bucket on another endpoint exports as it does from a folder."""
    import s3fs

    from tests.support.s3 import S3_ENV, MotoServer

    write_raw_shard(tmp_path / "local", "a", [chunk("x", 0, 1), chunk("y", 0, 1)])
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as endpoint:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("corpus")
        fs.put(str(tmp_path / "local"), "corpus/run1", recursive=True)
        code = export_main(["--tokens", "s3://corpus/run1", "--output", str(tmp_path / "out"),
                            "--s3-endpoint-url", endpoint, "--no-eos"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out  # moto's server announces itself on stdout first
    summary = json.loads(out[out.index("{"):])
    assert summary["documents"] == 2 and summary["layout"] == "interleaved"
    assert json.loads((tmp_path / "out" / "vocab.json").read_text())["special_tokens"] == {}
