"""Sources without Ray: listing, stable ids, labels, detection, and per-item read errors."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import SourceError
from pipeline.sources import (
    AudioSetSource,
    FilesSource,
    HFParquetSource,
    ManifestSource,
    TarSource,
    list_work,
    open_source,
)
from pipeline.sources.audioset import Segment, iter_segments
from tests.support.audio import wav_bytes
from tests.support.audioset import AUDIOSET_CSV, CLASS_LABELS


def read_all(source):
    return [item for unit in source.list_units() for item in source.read_unit(unit)]


def test_files_ids_are_relative_stable_and_never_paths_out(tmp_path):
    root = tmp_path / "audio"
    (root / "sub dir").mkdir(parents=True)
    (root / "sub dir" / "héllo wörld.wav").write_bytes(wav_bytes())
    (root / "..odd..name.flac").write_bytes(wav_bytes(fmt="FLAC"))
    (root / "notes.txt").write_text("skip me")
    items = read_all(FilesSource(str(root)))
    assert sorted(i.id for i in items) == ["..odd..name.flac", "sub dir/héllo wörld.wav"]
    assert all(i.data for i in items)
    again = [u.key for u in FilesSource(str(root)).list_units()]
    assert again == sorted(again) == [u.key for u in FilesSource(str(root) + "/").list_units()]
    globbed = FilesSource(str(root) + "/**/*.wav").list_units()
    assert [u.key for u in globbed] == ["sub dir/héllo wörld.wav"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_with_labels_segments_and_a_missing_object(tmp_path, fmt):
    (tmp_path / "a.wav").write_bytes(wav_bytes(2.0))
    rows = [
        {"id": "clip-a", "uri": "a.wav", "labels": "dog;bark", "start_s": 0.5, "end_s": 1.5},
        {"id": "clip-missing", "uri": str(tmp_path / "gone.wav"), "labels": None, "start_s": None, "end_s": None},
    ]
    path = tmp_path / f"manifest.{fmt}"
    table = pa.Table.from_pylist(rows)
    if fmt == "csv":
        import pyarrow.csv as pacsv
        pacsv.write_csv(table, path)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(table, path)
    source = open_source(str(path))
    assert isinstance(source, ManifestSource)
    items = {i.id: i for i in read_all(source)}
    assert items["clip-a"].labels == ["dog", "bark"] and items["clip-a"].start_s == 0.5
    assert items["clip-a"].uri.endswith("/a.wav") and items["clip-a"].data
    assert items["clip-missing"].failure.stage == "read"
    assert items["clip-missing"].failure.error_type == "FileNotFoundError"


def write_hf_parquet(path, count=3, with_ids=True):
    rows = []
    for i in range(count):
        row = {"audio": {"bytes": wav_bytes(0.3 + i * 0.1), "path": f"{i}.wav"} if i != 1 else
               {"bytes": None, "path": None},
               "labels": ["/m/09x0r"], "human_labels": ["Speech"]}
        if with_ids:
            row["video_id"] = f"vid{i:03d}"
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)


def test_hf_parquet_layout_is_recognised_and_read(tmp_path):
    data = tmp_path / "data" / "bal_train"
    data.mkdir(parents=True)
    write_hf_parquet(data / "00.parquet")
    write_hf_parquet(tmp_path / "data" / "eval.parquet", with_ids=False)
    source = open_source(str(tmp_path / "data"), split="bal_train")
    assert isinstance(source, HFParquetSource)
    items = read_all(source)
    assert [i.id for i in items] == ["vid000", "vid001", "vid002"]
    assert items[0].labels == ["/m/09x0r"] and items[0].human_labels == ["Speech"]
    assert items[1].failure.error_type == "MissingAudioBytes"
    only_file = open_source(str(tmp_path / "data" / "eval.parquet"))
    assert [i.id for i in read_all(only_file)] == ["eval.parquet#0", "eval.parquet#1", "eval.parquet#2"]


def test_hf_dataset_whose_audio_feature_has_another_name_is_read(tmp_path):
    """A Parquet file written by `datasets` with its Audio feature in a column named `speech` (as
    some Hub datasets name it): the column is found from the file's `datasets` metadata."""
    import datasets

    rows = {"speech": [{"bytes": wav_bytes(0.3), "path": "a.wav"}, {"bytes": wav_bytes(0.4), "path": "b.wav"}],
            "text": ["hello", "world"], "id": ["utt-1", "utt-2"]}
    table = datasets.Dataset.from_dict(rows).cast_column("speech", datasets.Audio(decode=False))
    table.to_parquet(str(tmp_path / "train.parquet"))
    source = open_source(str(tmp_path / "train.parquet"))
    assert isinstance(source, HFParquetSource)
    items = read_all(source)
    assert [(i.id, i.meta, len(i.data)) for i in items] == [
        ("utt-1", {"text": "hello"}, len(wav_bytes(0.3))), ("utt-2", {"text": "world"}, len(wav_bytes(0.4)))]
    pq.write_table(pa.table({"text": ["no audio here"]}), tmp_path / "other.parquet")
    [failure] = read_all(HFParquetSource(str(tmp_path / "other.parquet")))
    assert failure.failure.error_type == "NoAudioColumn"


def test_tar_shards_with_json_metadata(tmp_path):
    shard = tmp_path / "shards" / "train-000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for key, payload in (("s1.flac", wav_bytes(fmt="FLAC")), ("s1.json", b'{"labels": ["cat"]}'),
                             ("d/s2.wav", wav_bytes()), ("s3.json", b"{}")):
            info = tarfile.TarInfo(key)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    source = open_source(str(shard.parent))
    assert isinstance(source, TarSource)
    items = {i.id: i for i in read_all(source)}
    assert set(items) == {"train-000.tar/s1", "train-000.tar/d/s2", "train-000.tar/s3"}
    assert items["train-000.tar/s1"].labels == ["cat"]
    assert items["train-000.tar/s3"].failure.error_type == "MissingAudioMember"
    assert items["train-000.tar/d/s2"].uri.endswith("train-000.tar#d/s2.wav")


def test_audioset_csv_joins_files_and_labels(tmp_path):
    assert next(iter_segments(AUDIOSET_CSV)) == Segment(
        "--PJHxphWEs", "30.000", "40.000", 30.0, 40.0, ["/m/09x0r", "/t/dd00088"])
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "--PJHxphWEs_30.000_40.000.flac").write_bytes(wav_bytes(fmt="FLAC"))
    (audio / "--ZhevVpy1s.wav").write_bytes(wav_bytes())
    (tmp_path / "segments.csv").write_text(AUDIOSET_CSV)
    (tmp_path / "labels.csv").write_text(CLASS_LABELS)
    source = open_source(str(tmp_path / "segments.csv"), audio_root=str(audio), class_labels=str(tmp_path / "labels.csv"))
    assert isinstance(source, AudioSetSource)
    items = {i.id: i for i in read_all(source)}
    assert set(items) == {"--PJHxphWEs_30.000_40.000", "--ZhevVpy1s_50.000_60.000", "missingYTID_0.000_10.000"}
    assert items["--PJHxphWEs_30.000_40.000"].human_labels == ["Speech", "Gush"]
    assert items["--ZhevVpy1s_50.000_60.000"].human_labels == ["Walk, footsteps"]
    assert items["missingYTID_0.000_10.000"].failure.error_type == "FileNotFoundError"
    with pytest.raises(SourceError, match="audio-root"):
        AudioSetSource(str(tmp_path / "segments.csv")).list_units()


def test_detection_of_an_unknown_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing to see")
    with pytest.raises(SourceError, match="cannot tell what kind of source"):
        open_source(str(tmp_path))


def test_an_audioset_line_without_seconds_is_refused_in_one_line(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "segments.csv").write_text('# YTID, start_seconds, end_seconds, positive_labels\n'
                                           'abc, 30.000, 40.000, "/m/09x0r"\nxyz, thirty, 40.000, "/m/09x0r"\n')
    source = open_source(str(tmp_path / "segments.csv"), audio_root=str(tmp_path / "audio"))
    with pytest.raises(SourceError, match=r"malformed AudioSet segment line \(start and end must be seconds\).*xyz"):
        source.list_units()


def test_file_names_that_are_no_ids_are_refused_naming_the_first(tmp_path):
    (tmp_path / "good.wav").write_bytes(wav_bytes())
    (tmp_path / "tab\there.wav").write_bytes(wav_bytes())
    with pytest.raises(SourceError, match=r"1 invalid id\(s\).*entry 2 .*tab\\there.wav.*control character"):
        list_work(open_source(str(tmp_path)))
