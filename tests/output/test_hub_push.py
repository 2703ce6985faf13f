"""push_to_hub offline: what it would upload (and what never), how it commits, its one-line errors.
The Hub itself is replaced by a recorder; the unreachable case uses a real client on a closed port."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from pipeline.output import hub_push
from pipeline.output.folder import FAILURES_DIR, TOKENS_DIR, OutputFolder, failures_table, tokens_table
from pipeline.output.hub_push import HubError, files_to_push, main, push_to_hub

CODEC = {"codec": "semanticodec", "variant": "semanticodec-r100-v4096", "token_rate": 100,
         "semantic_vocab_size": 4096, "acoustic_vocab_size": 8192, "files": {"encoder": {"sha256": "1" * 64}}}


def make_output(folder, *, failures: bool) -> OutputFolder:
    """Two token shards (and one failure shard)."""
    output = OutputFolder(str(folder))
    for keys in (["a", "b"], ["c"]):
        rows = [{"id": k, "uri": f"file:///a/{k}.wav", "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0,
                 "duration_s": 0.1, "source_sample_rate": 16000, "source_channels": 1, "num_frames": 2,
                 "semantic": np.array([1, 2], np.uint16), "acoustic": np.array([3, 4], np.uint16),
                 "labels": None, "human_labels": None} for k in keys]
        output.write_shard(TOKENS_DIR, tokens_table(rows), CODEC)
    if failures:
        output.write_shard(FAILURES_DIR, failures_table([{"id": "bad", "uri": "file:///a/bad.wav", "stage": "read",
                                                          "error_type": "AudioDecodeError", "message": "x"}]))
    return output


class RecordingHub:
    """Stands in for HfApi: records repo creation and commits."""

    def __init__(self, endpoint=None, token=None):
        self.token, self.repos, self.commits = token, [], []
        RecordingHub.last = self

    def create_repo(self, repo_id, **kwargs):
        self.repos.append((repo_id, kwargs))
        return f"https://hub.example/datasets/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        self.commits.append([(op.path_in_repo, op.path_or_fileobj) for op in operations])


def with_clutter(folder):
    """A real output's non-data files next to the data."""
    (folder / "_tmp").mkdir(exist_ok=True)
    (folder / "_tmp" / "x.parquet").write_bytes(b"half")
    (folder / "_lease.json").write_text("{}")
    (folder / "_fingerprint.json").write_text("{}")
    (folder / "retryable").mkdir()
    (folder / "retryable" / "part-0.parquet").write_bytes(b"transient")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "x").write_text("x")
    (folder / TOKENS_NOTE).write_text("notes")


TOKENS_NOTE = "tokens/notes.txt"


def test_files_to_push_are_the_committed_data_and_the_card(tmp_path):
    output = make_output(tmp_path / "OUT", failures=True)
    output.write_run_record({"counts": {}})
    with_clutter(tmp_path / "OUT")
    files = files_to_push(str(tmp_path / "OUT"))
    tokens = sorted(p.name for p in (tmp_path / "OUT" / "tokens").glob("part-*.parquet"))
    failures = sorted(p.name for p in (tmp_path / "OUT" / "failures").glob("part-*.parquet"))
    assert files == sorted(["README.md", "manifest.json", *(f"tokens/{n}" for n in tokens),
                            *(f"failures/{n}" for n in failures)])
    assert len(tokens) == 2 and len(failures) == 1


def test_push_uploads_exactly_those_files_in_bounded_commits(tmp_path, monkeypatch):
    make_output(tmp_path / "OUT", failures=True).write_run_record({"counts": {"tokenized": 3}})
    with_clutter(tmp_path / "OUT")
    monkeypatch.setattr(hub_push, "HfApi", RecordingHub)
    monkeypatch.setattr(hub_push, "FILES_PER_COMMIT", 2)
    url = push_to_hub(str(tmp_path / "OUT"), "someone/tokens", token="hf_test", private=True)
    hub = RecordingHub.last
    assert url.endswith("datasets/someone/tokens") and hub.token == "hf_test"
    assert hub.repos == [("someone/tokens", {"repo_type": "dataset", "private": True, "exist_ok": True})]
    assert [len(c) for c in hub.commits] == [2, 3]  # 4 data files, 2 per commit; the card last
    uploaded = [path for commit in hub.commits for path, _ in commit]
    assert sorted(uploaded) == files_to_push(str(tmp_path / "OUT")) and uploaded[-1] == "README.md"
    card = hub.commits[-1][-1][1].decode()
    assert "config_name: failures" in card and 'load_dataset("someone/tokens"' in card


def test_push_from_a_remote_output_sends_file_contents(tmp_path, monkeypatch):
    output = make_output("memory://hub-push-test/OUT", failures=False)
    monkeypatch.setattr(hub_push, "HfApi", RecordingHub)
    push_to_hub(output.url, "someone/tokens", token="hf_test")
    fs, root = output.fs, output.root
    sent = dict(RecordingHub.last.commits[0])
    assert len(sent) == 3 and sent["README.md"].startswith(b"---\n")
    for name, content in sent.items():
        if name != "README.md":
            assert content == fs.cat_file(f"{root}/{name}")
    fs.rm(root, recursive=True)


def test_no_token_is_one_line(tmp_path, monkeypatch, capsys):
    make_output(tmp_path / "OUT", failures=False)
    monkeypatch.setattr(hub_push, "get_token", lambda: None)
    with pytest.raises(HubError, match="no Hugging Face token.*hf auth login"):
        push_to_hub(str(tmp_path / "OUT"), "someone/tokens")
    assert main([str(tmp_path / "OUT"), "someone/tokens"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_hub_and_empty_output_are_one_line(tmp_path):
    with pytest.raises(HubError, match="no committed token shards"):
        push_to_hub(str(tmp_path / "empty"), "someone/tokens", token="hf_test")
    make_output(tmp_path / "OUT", failures=False)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HubError, match="not reachable") as raised:
        push_to_hub(str(tmp_path / "OUT"), "someone/tokens", token="hf_test", endpoint=f"http://127.0.0.1:{port}")
    assert "\n" not in str(raised.value)
