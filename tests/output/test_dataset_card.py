"""The dataset card: `datasets.load_dataset(OUT)` reads the tokens, `(OUT, "failures")` the failures."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.output.dataset_card import CARD_FILE, write_dataset_card
from pipeline.output.folder import FAILURES_DIR, TOKENS_DIR, OutputFolder, failures_table, tokens_table

CODEC = {"codec": "semanticodec", "variant": "semanticodec-r50-v8192", "token_rate": 50,
         "semantic_vocab_size": 8192, "acoustic_vocab_size": 8192, "dtype": "float32", "synthetic_weights": False,
         "checkpoint": "hf://haoheliu/SemantiCodec",
         "files": {"encoder": {"sha256": "1" * 64}, "semantic_codebook": {"sha256": "2" * 64}}}


def token_row(key: str, frames: int = 4) -> dict:
    ids = np.arange(frames, dtype=np.uint16)
    return {"id": key, "uri": f"file:///a/{key}.wav", "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0,
            "duration_s": frames / 25, "source_sample_rate": 16000, "source_channels": 1, "num_frames": frames,
            "semantic": ids, "acoustic": ids + 1, "labels": ["/m/09x0r"], "human_labels": ["Speech"]}


def make_output(folder, *, failures: bool, codec=CODEC) -> OutputFolder:
    output = OutputFolder(str(folder))
    output.write_shard(TOKENS_DIR, tokens_table([token_row("a"), token_row("b")]), codec)
    output.write_shard(TOKENS_DIR, tokens_table([token_row("c")]), codec)
    if failures:
        output.write_shard(FAILURES_DIR, failures_table([{"id": "bad", "uri": "file:///a/bad.wav", "stage": "read",
                                                          "error_type": "AudioDecodeError", "message": "not audio"}]))
    return output


def load(path, *args, tmp_path):
    import datasets

    return datasets.load_dataset(str(path), *args, split="train", cache_dir=str(tmp_path / "hf-cache"))


def test_load_dataset_reads_tokens_and_failures_configs(tmp_path):
    output = make_output(tmp_path / "OUT", failures=True)
    with pytest.raises(Exception, match="column names don't match|generating the dataset"):
        load(tmp_path / "OUT", tmp_path=tmp_path / "before")  # tokens/ and failures/ side by side, no card
    output.write_run_record({"codec": CODEC, "source": {"url": "/data/clips", "kind": "folder"},
                           "counts": {"inputs": 4, "tokenized": 3, "failed": 1, "token_rows": 3,
                                      "failures_by_type": {"AudioDecodeError": 1}},
                           "totals": {"audio_hours": 0.5, "tokens": 24}})
    path = write_dataset_card(str(tmp_path / "OUT"))
    assert path.endswith(CARD_FILE)

    tokens = load(tmp_path / "OUT", tmp_path=tmp_path)
    assert sorted(tokens["id"]) == ["a", "b", "c"] and tokens[0]["semantic"] == [0, 1, 2, 3]
    assert tokens.column_names[:3] == ["id", "uri", "chunk_index"]
    failures = load(tmp_path / "OUT", "failures", tmp_path=tmp_path)
    assert failures["id"] == ["bad"] and failures["error_type"] == ["AudioDecodeError"]

    card = (tmp_path / "OUT" / CARD_FILE).read_text()
    for expected in ("semanticodec-r50-v8192", "1" * 64, "2" * 64, "| tokenized | 3 |", "| AudioDecodeError | 1 |",
                     "`num_frames`", 'load_dataset("', "/data/clips"):
        assert expected in card, expected
    assert "synthetic (random) codec weights" not in card


def test_card_without_failures_has_only_the_tokens_config(tmp_path):
    make_output(tmp_path / "OUT", failures=False, codec={**CODEC, "synthetic_weights": True})
    write_dataset_card(str(tmp_path / "OUT"), repo_id="someone/audio-tokens")  # no run record yet: shard provenance
    card = (tmp_path / "OUT" / CARD_FILE).read_text()
    front = card.split("---")[1]
    assert "config_name: tokens" in front and "failures" not in front
    assert "synthetic (random) codec weights" in card and 'load_dataset("someone/audio-tokens"' in card
    assert len(load(tmp_path / "OUT", tmp_path=tmp_path)) == 3
    with pytest.raises(ValueError, match="failures"):
        load(tmp_path / "OUT", "failures", tmp_path=tmp_path)


def test_card_leaves_underscore_files_out_of_the_data(tmp_path):
    output = make_output(tmp_path / "OUT", failures=True)
    (tmp_path / "OUT" / "_tmp").mkdir(exist_ok=True)
    (tmp_path / "OUT" / "_tmp" / "half-written.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "OUT" / "_lease.json").write_text("{}")
    write_dataset_card(output.url)
    assert len(load(tmp_path / "OUT", tmp_path=tmp_path)) == 3


def test_the_card_is_published_as_every_output_file_is(tmp_path, monkeypatch):
    """Flushed to disk before the one-step replace (a crash never leaves half a card), and a folder
    that refuses the write is one line naming it."""
    import os

    import pipeline.output.folder as folder_module

    synced, fsync = [], os.fsync
    monkeypatch.setattr(folder_module.os, "fsync", lambda fd: synced.append(fd) or fsync(fd))
    make_output(tmp_path / "OUT", failures=False)
    synced.clear()
    write_dataset_card(str(tmp_path / "OUT"))
    assert len(synced) == 1 and (tmp_path / "OUT" / CARD_FILE).read_text().startswith("---\n")
    assert list((tmp_path / "OUT" / "_tmp").iterdir()) == []

    from pipeline.errors import OutputError

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder_module.os, "replace", full)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'OUT' / CARD_FILE}: No space left on device"):
        write_dataset_card(str(tmp_path / "OUT"))
