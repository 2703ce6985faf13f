"""Sources under stress (issues 12 and 13): retries, cut shards, id hygiene, NeMo/Lhotse manifests,
meta columns, `#` in paths and one-line pre-flight errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline.sources.base as source_base
from pipeline.errors import ConfigError, SourceError
from pipeline.sources import (
    MAX_ID_CHARS,
    FilesSource,
    HFParquetSource,
    ManifestSource,
    TarSource,
    WorkList,
    WorkUnit,
    dedupe_units,
    find_duplicate_ids,
    is_member_uri,
    list_work,
    open_source,
    split_member_uri,
)
from tests.support.audio import wav_bytes


def read_all(source):
    return [item for unit in source.list_units() for item in source.read_unit(unit)]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(source_base, "RETRY_BACKOFF_S", 0.0)


# --- 1. transient read errors are retried, then recorded as retryable ------------------------------

class FlakyFS:
    """Wraps a filesystem: `open` fails with `error` for the first `failures` calls."""

    def __init__(self, fs, failures: int, error: Exception):
        self.fs, self.failures, self.error, self.opens = fs, failures, error, 0

    def open(self, path, mode="rb"):
        self.opens += 1
        if self.opens <= self.failures:
            raise self.error
        return self.fs.open(path, mode)

    def __getattr__(self, name):
        return getattr(self.fs, name)


def flaky_source(tmp_path, monkeypatch, failures, retries, error=None):
    (tmp_path / "a.wav").write_bytes(wav_bytes())
    source = FilesSource(str(tmp_path), read_retries=retries)
    fs, _ = source.filesystem()
    flaky = FlakyFS(fs, failures, error or ConnectionResetError("connection reset by peer"))
    monkeypatch.setattr(FilesSource, "filesystem", lambda self, url=None: (flaky, str(url or self.url)))
    return source, flaky


def test_transient_read_errors_are_retried_in_run(tmp_path, monkeypatch):
    source, flaky = flaky_source(tmp_path, monkeypatch, failures=2, retries=3)
    [item] = read_all(source)
    assert item.failure is None and item.data and flaky.opens == 3


def test_a_read_that_keeps_failing_is_a_retryable_read_failure(tmp_path, monkeypatch):
    source, flaky = flaky_source(tmp_path, monkeypatch, failures=5, retries=2)
    [item] = read_all(source)
    assert flaky.opens == 2
    assert (item.failure.stage, item.failure.error_type, item.failure.retryable) == ("read", "ConnectionResetError", True)


def test_forbidden_is_retryable_by_the_next_run_but_not_hammered_now(tmp_path, monkeypatch):
    source, flaky = flaky_source(tmp_path, monkeypatch, failures=5, retries=3, error=PermissionError("Forbidden"))
    [item] = read_all(source)
    assert flaky.opens == 1 and item.failure.retryable and item.failure.stage == "read"


def test_content_problems_are_not_retryable(tmp_path):
    rows = [{"audio": {"bytes": None, "path": None}, "video_id": "v0"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    [item] = read_all(HFParquetSource(str(tmp_path / "p.parquet")))
    assert item.failure.error_type == "MissingAudioBytes" and item.failure.retryable is False


# --- 3. a cut tar shard keeps its readable members -------------------------------------------------

def write_tar(path, count=8, seconds=0.5):
    with tarfile.open(path, "w") as tar:
        for i in range(count):
            payload = wav_bytes(seconds)
            info = tarfile.TarInfo(f"k{i:02d}.wav")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_a_tar_shard_cut_at_75_percent_keeps_every_readable_member(tmp_path):
    shard = tmp_path / "cut.tar"
    write_tar(shard)
    data = shard.read_bytes()
    shard.write_bytes(data[: int(len(data) * 0.75)])
    items = read_all(TarSource(str(shard)))
    good = [i for i in items if i.failure is None]
    failed = [i for i in items if i.failure is not None]
    assert [i.id for i in good] == [f"cut.tar/k{n:02d}" for n in range(5)]
    assert all(i.data for i in good)
    [rest] = failed
    assert (rest.id, rest.failure.stage, rest.failure.retryable) == ("cut.tar", "read", False)
    assert "after member 'k05.wav'" in rest.failure.message and "5 input(s)" in rest.failure.message


class BreakingFile(io.BytesIO):
    def __init__(self, data, after):
        super().__init__(data)
        self.after = after

    def read(self, size=-1):
        if self.tell() >= self.after:
            raise ConnectionResetError("connection reset mid-shard")
        return super().read(size if size >= 0 and self.tell() + size <= self.after else self.after - self.tell())


def test_an_io_error_mid_shard_is_a_retryable_failure_of_the_rest(tmp_path, monkeypatch):
    shard = tmp_path / "s.tar"
    write_tar(shard, count=4)
    data = shard.read_bytes()
    source = TarSource(str(shard))
    fs, _ = source.filesystem()

    class FS:
        protocol = "file"

        def open(self, path, mode="rb"):
            return BreakingFile(data, after=len(data) // 2)

        def __getattr__(self, name):
            return getattr(fs, name)

    units = source.list_units()
    monkeypatch.setattr(TarSource, "filesystem", lambda self, url=None: (FS(), str(url or self.url)))
    items = [item for unit in units for item in source.read_unit(unit)]
    assert [i.id for i in items if i.failure is None] == ["s.tar/k00"]
    assert items[-1].failure.retryable is True and items[-1].failure.error_type == "ConnectionResetError"


# --- 4. ids: read as written, validated, duplicates found -----------------------------------------

def test_csv_ids_are_strings_without_type_inference(tmp_path):
    (tmp_path / "a.wav").write_bytes(wav_bytes())
    (tmp_path / "m.csv").write_text("id,uri,start_s,end_s\n001,a.wav,0,0.1\n01,a.wav,,\n1,a.wav,0.05,\n")
    units = open_source(str(tmp_path / "m.csv")).list_units()
    assert [u.key for u in units] == ["001", "01", "1"]
    assert [(u.item.start_s, u.item.end_s) for u in units] == [(0.0, 0.1), (None, None), (0.05, None)]


def test_json_and_parquet_ids_keep_their_text(tmp_path):
    (tmp_path / "a.wav").write_bytes(wav_bytes())
    (tmp_path / "m.jsonl").write_text('{"id": "007", "uri": "a.wav"}\n{"id": 7, "uri": "a.wav"}\n')
    assert [u.key for u in open_source(str(tmp_path / "m.jsonl")).list_units()] == ["007", "7"]
    pq.write_table(pa.table({"id": pa.array([1, 20], pa.int64()), "uri": ["a.wav", "a.wav"]}), tmp_path / "m.parquet")
    assert [u.key for u in open_source(str(tmp_path / "m.parquet")).list_units()] == ["1", "20"]
    pq.write_table(pa.table({"id": [1.0, 2.0], "uri": ["a.wav", "a.wav"]}), tmp_path / "f.parquet")
    with pytest.raises(SourceError, match="ids must be strings or integers"):
        open_source(str(tmp_path / "f.parquet")).list_units()
    (tmp_path / "f.jsonl").write_text('{"id": 1.5, "uri": "a.wav"}\n')
    with pytest.raises(SourceError, match="row 1: id must be a string or an integer"):
        open_source(str(tmp_path / "f.jsonl")).list_units()


@pytest.mark.parametrize("bad_id, reason", [("a\x00b", "control character"), ("x\x1f0\ny", "control character"),
                                            ("z" * (MAX_ID_CHARS + 1), f"at most {MAX_ID_CHARS}")])
def test_invalid_ids_are_a_clear_manifest_error(tmp_path, bad_id, reason):
    rows = [{"id": "fine", "uri": "a.wav"}, {"id": bad_id, "uri": "a.wav"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SourceError, match=f"1 unusable row.*row 2: .*{reason}"):
        open_source(str(tmp_path / "m.jsonl")).list_units()


def test_invalid_ids_inside_a_parquet_file_fail_under_their_row_position(tmp_path):
    rows = [{"audio": {"bytes": wav_bytes(), "path": "x"}, "id": "ok"},
            {"audio": {"bytes": wav_bytes(), "path": "y"}, "id": "bad\x00id"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    items = read_all(HFParquetSource(str(tmp_path / "d.parquet")))
    assert items[0].id == "ok" and items[0].failure is None
    assert (items[1].id, items[1].failure.error_type) == ("d.parquet#1", "InvalidId")


def test_duplicate_ids_are_found_refused_or_kept_first(tmp_path):
    (tmp_path / "m.csv").write_text("id,uri\na,x.wav\nb,y.wav\na,z.wav\nc,w.wav\nb,v.wav\na,u.wav\n")
    units = list_work(open_source(str(tmp_path / "m.csv")))
    assert find_duplicate_ids(units) == {"a": 3, "b": 2}
    with pytest.raises(SourceError, match=r"2 id\(s\) are listed more than once: 'a' x3, 'b' x2.*--dedupe first"):
        dedupe_units(units, "refuse")
    kept = dedupe_units(units, "first")
    assert [(u.key, u.uri.rsplit("/", 1)[-1]) for u in kept] == [("a", "x.wav"), ("b", "y.wav"), ("c", "w.wav")]
    containers = WorkList.from_units([WorkUnit("s.tar", "/s.tar"), WorkUnit("s.tar", "/s.tar")])
    assert list(dedupe_units(containers, "refuse")) == list(containers)
    with pytest.raises(ConfigError):
        dedupe_units(units, "last")


# --- 9. NeMo and Lhotse manifests; extra columns into meta ----------------------------------------

def test_nemo_manifest_offset_duration_and_extra_columns(tmp_path):
    (tmp_path / "a.wav").write_bytes(wav_bytes(2.0))
    rows = [{"audio_filepath": "a.wav", "offset": 0.5, "duration": 1.0, "text": "hello there", "speaker": 12,
             "tags": ["x"]},
            {"audio_filepath": "a.wav", "duration": 2.0, "text": "whole"}]
    (tmp_path / "train_manifest.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = open_source(str(tmp_path / "train_manifest.json"))
    assert isinstance(source, ManifestSource)
    first, second = read_all(source)
    assert (first.start_s, first.end_s, first.meta) == (0.5, 1.5, {"text": "hello there", "speaker": 12})
    assert first.id == "a.wav" and first.data and first.uri == str(tmp_path / "a.wav")
    assert (second.start_s, second.end_s, second.meta) == (None, 2.0, {"text": "whole"})


def test_lhotse_cuts_and_recordings(tmp_path):
    (tmp_path / "rec.flac").write_bytes(wav_bytes(3.0, fmt="FLAC"))
    recording = {"id": "rec1", "sources": [{"type": "file", "channels": [0], "source": "rec.flac"}],
                 "sampling_rate": 16000, "num_samples": 48000, "duration": 3.0}
    cut = {"id": "rec1-0", "start": 1.0, "duration": 1.5, "channel": 0, "type": "MonoCut", "recording": recording,
           "supervisions": [{"id": "s2", "recording_id": "rec1", "start": 0.8, "duration": 0.5, "text": "world",
                             "speaker": "spk1", "language": "en"},
                            {"id": "s1", "recording_id": "rec1", "start": 0.0, "duration": 0.7, "text": "hello",
                             "speaker": "spk1", "language": "en"}]}
    (tmp_path / "cuts.jsonl").write_text(json.dumps(cut) + "\n")
    [item] = read_all(open_source(str(tmp_path / "cuts.jsonl")))
    assert (item.id, item.start_s, item.end_s) == ("rec1-0", 1.0, 2.5)
    assert item.meta == {"text": "hello world", "speaker": "spk1", "language": "en"}
    assert item.uri == str(tmp_path / "rec.flac") and item.data
    (tmp_path / "recordings.jsonl").write_text(json.dumps(recording) + "\n")
    [rec] = read_all(open_source(str(tmp_path / "recordings.jsonl")))
    assert (rec.id, rec.start_s, rec.end_s, rec.meta) == ("rec1", None, 3.0, None)


def test_tar_json_and_hf_parquet_scalars_go_into_meta(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name, payload in (("k.wav", wav_bytes()), ("k.json", b'{"labels": ["a"], "text": "hi", "n": 3}')):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    [item] = read_all(TarSource(str(tmp_path / "s.tar")))
    assert (item.labels, item.meta) == (["a"], {"text": "hi", "n": 3})
    rows = [{"audio": {"bytes": wav_bytes(), "path": "x"}, "id": "r0", "transcript": "ok", "age": 31.5}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    [row] = read_all(HFParquetSource(str(tmp_path / "d.parquet")))
    assert row.meta == {"transcript": "ok", "age": 31.5}


# --- 8. '#' in a local path ------------------------------------------------------------------------

def test_a_hash_in_a_local_path_is_a_file_not_an_archive_member(tmp_path):
    folder = tmp_path / "take #2"
    folder.mkdir()
    (folder / "mix #1.wav").write_bytes(wav_bytes())
    [item] = read_all(open_source(str(folder)))
    assert item.id == "mix #1.wav" and item.data and item.failure is None
    assert not is_member_uri(item.uri) and split_member_uri(item.uri) is None
    assert split_member_uri("s3://b/shards/a.tar#d/k.wav") == ("s3://b/shards/a.tar", "d/k.wav")
    assert split_member_uri("/data/x #1/p.parquet#row=12") == ("/data/x #1/p.parquet", "row=12")
    assert not is_member_uri("/data/p.parquet#row=x") and not is_member_uri("/data/notes.tar.txt#1.wav")


# --- 10. pre-flight: one clear line --------------------------------------------------------------

def test_preflight_errors_say_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(SourceError, match=f"source {tmp_path}/nope does not exist"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="is an empty folder"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="matches no files"):
        open_source(str(tmp_path / "empty" / "*.flac"))
    (tmp_path / "m.csv").write_text("name,seconds\na.wav,3\n")
    with pytest.raises(SourceError, match="no audio path column: use one of uri, path, audio_path, audio_filepath"):
        open_source(str(tmp_path / "m.csv")).list_units()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).endswith("locked") else real_access(path, mode))
    (tmp_path / "locked").mkdir()
    with pytest.raises(SourceError, match="locked cannot be read: permission denied"):
        open_source(str(tmp_path / "locked"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match=r"looked for audio files \(.wav.*\.tar shards.*found 1 other file"):
        open_source(str(tmp_path / "odd"))


def test_missing_s3_credentials_are_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    code = ("from pipeline.errors import SourceError\nfrom pipeline.sources import open_source\n"
            "try:\n    open_source('s3://bucket/audio/', storage_options={'s3': {'endpoint_url': 'http://127.0.0.1:9'}})\n"
            "except SourceError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.stdout.strip() == ("no AWS credentials found for s3://bucket/audio/: set AWS_ACCESS_KEY_ID/"
                                  "AWS_SECRET_ACCESS_KEY or --aws-profile (or --s3-anon for a public bucket)"), out.stderr


def test_a_missing_input_is_retryable_unless_the_user_says_it_will_not_appear(tmp_path):
    (tmp_path / "here.wav").write_bytes(wav_bytes())
    listing = tmp_path / "list.csv"
    listing.write_text(f"id,uri\nhere,{tmp_path / 'here.wav'}\ngone,{tmp_path / 'gone.wav'}\n")
    for policy, retryable in (("retry", True), ("fail", False)):
        items = {i.id: i for i in read_all(open_source(str(listing), missing_inputs=policy))}
        assert items["here"].data and items["here"].failure is None
        failure = items["gone"].failure
        assert (failure.stage, failure.error_type, failure.retryable) == ("read", "FileNotFoundError", retryable)
    denied = source_base.Source("x", missing_inputs="fail").read_failure("x", "/x", PermissionError("denied"))
    assert denied.failure.retryable  # only "does not exist" is made final; a denied read may pass
