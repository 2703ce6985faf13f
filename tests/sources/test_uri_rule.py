"""The URI rule (issue 21, "A dataset reaches only itself"), without Ray: what a URI named by data
resolves to, and manifests, Parquet datasets and AudioSet CSVs, on local files and on the moto S3
server, that name a private local file, a local tar member, a chained URL or a canary HTTP server:
each such row is one failure row naming the rule, nothing is read, the server sees no request."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError
from pipeline.sources import HFParquetSource, UriOutsideRule, UriRule, open_source
from tests.support.audio import wav_bytes
from tests.support.audioset import AUDIOSET_CSV
from tests.support.canary import CanaryServer, hostile_uris, write_canary_file, write_canary_tar


def read_all(source):
    return [item for unit in source.list_units() for item in source.read_unit(unit)]


# --- the rule itself -------------------------------------------------------------------------------

def test_relative_and_absolute_paths_under_the_root_resolve(tmp_path):
    rule = UriRule(str(tmp_path / "data"))
    data = str(tmp_path / "data")
    assert rule.resolve("a.wav") == f"{data}/a.wav"
    assert rule.resolve("sub/../b.wav") == f"{data}/b.wav"
    assert rule.resolve(f"{data}/c.wav") == rule.resolve(f"file://{data}/c.wav") == f"{data}/c.wav"
    remote = UriRule("s3://bucket/data/manifests", root="s3://bucket/data")
    assert remote.resolve("../audio/x.wav") == "s3://bucket/data/audio/x.wav"
    assert remote.resolve("s3a://bucket/data/y.wav") == "s3://bucket/data/y.wav"
    web = UriRule("https://host.org/ds")
    assert web.resolve("x%20y.wav?version=2") == "https://host.org/ds/x%20y.wav?version=2"


@pytest.mark.parametrize("raw, why", [
    ("../x.wav", "is outside"), ("/etc/shadow", "is outside"), ("file:///etc/passwd", "is outside"),
    ("http://127.0.0.1:9/x.wav", "is on another filesystem (http://"), ("s3://bucket/x.wav", "another filesystem"),
    ("tar://ok.wav::file:///x.tar", "is a chained URL"), ("simplecache::s3://b/x.wav", "is a chained URL"),
    ("a\x00b.wav", "cannot be resolved"), ("file://relative.wav", "cannot be resolved"), ("", "is not a path"),
])
def test_local_data_cannot_name_other_places(tmp_path, raw, why):
    with pytest.raises(UriOutsideRule, match="the URI rule") as caught:
        UriRule(str(tmp_path)).resolve(raw)
    assert why in str(caught.value) and "--allow-uri-prefix" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("raw", ["/home/user/private.wav", "file:///home/user/private.wav",
                                 "http://127.0.0.1/x.wav", "https://bucket.s3.amazonaws.com/data/x.wav",
                                 "s3://bucket/other/x.wav", "s3://other-bucket/data/x.wav", "../x.wav",
                                 "s3://bucket/data/../other/x.wav", "gs://bucket/data/x.wav"])
def test_remote_data_reaches_only_itself(raw):
    assert not UriRule("s3://bucket/data").allows(raw)


def test_a_symbolic_link_out_of_the_root_is_outside(tmp_path):
    (tmp_path / "data").mkdir()
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    os.symlink(secret, tmp_path / "data" / "link.wav")
    assert not UriRule(str(tmp_path / "data")).allows("link.wav")
    assert UriRule(str(tmp_path / "data"), allowed_prefixes=(str(tmp_path),)).allows("link.wav")


def test_a_linked_folder_out_of_the_root_is_outside_for_every_file_in_it(tmp_path):
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "linked")
    rule = UriRule(str(tmp_path / "data"))  # one rule for a whole manifest: each folder resolved once
    assert [rule.allows(f"{folder}/{n}.wav") for folder in ("real", "linked", "real") for n in range(2)] == [
        True, True, False, False, True, True]
    os.symlink(tmp_path / "elsewhere" / "x.wav", tmp_path / "data" / "real" / "x.wav")
    assert not rule.allows("real/x.wav") and not rule.allows(str(tmp_path / "data" / "linked" / "y.wav"))


def test_allowed_prefixes_widen_it_on_folder_boundaries(tmp_path):
    rule = UriRule("s3://bucket/manifests", allowed_prefixes=("s3://bucket/audio", "/mnt/data/"))
    assert rule.resolve("s3://bucket/audio/x.wav") == "s3://bucket/audio/x.wav"
    assert rule.resolve("/mnt/data/y.wav") == "/mnt/data/y.wav"
    assert not rule.allows("s3://bucket/audio2/x.wav") and not rule.allows("/mnt/database/y.wav")
    with pytest.raises(ConfigError, match="chained"):
        UriRule(str(tmp_path), allowed_prefixes=("tar://x::file:///y.tar",))
    with pytest.raises(ConfigError, match="needs a folder or URL prefix"):
        open_source(str(tmp_path), allow_uri_prefixes=("",))


# --- manifests, datasets and AudioSet CSVs naming other places -----------------------------------

def hostile_manifest_rows(tmp_path, server_url: str) -> list[dict]:
    canary = write_canary_file(tmp_path / "home")
    local_tar = write_canary_tar(tmp_path / "home")
    rows = [{"id": id, "uri": uri} for id, uri in hostile_uris(canary, local_tar, server_url).items()]
    return rows + [{"id": "good", "uri": "clips/good.wav", "start_s": 0.1, "end_s": 0.4}]


def assert_refused(items: dict, good_data: bytes) -> None:
    assert items["good"].failure is None and items["good"].data == good_data
    for id, item in items.items():
        if id != "good":
            assert item.data is None and (item.failure.stage, item.failure.error_type) == ("read", "UriOutsideRule")
            assert not item.failure.retryable and "the URI rule" in item.failure.message, id


def test_a_local_manifest_names_nothing_outside_its_folder(tmp_path):
    with CanaryServer() as canary:
        rows = hostile_manifest_rows(tmp_path, canary.url)
        (tmp_path / "ds" / "clips").mkdir(parents=True)
        (tmp_path / "ds" / "clips" / "good.wav").write_bytes(wav_bytes())
        (tmp_path / "ds" / "list.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        items = {i.id: i for i in read_all(open_source(str(tmp_path / "ds" / "list.jsonl")))}
        assert_refused(items, wav_bytes())
        assert items["good"].uri == str(tmp_path / "ds" / "clips" / "good.wav") and items["good"].start_s == 0.1
        assert canary.requests == []
        widened = {i.id: i for i in read_all(open_source(str(tmp_path / "ds" / "list.jsonl"),
                                                         allow_uri_prefixes=(str(tmp_path / "home"),)))}
        assert widened["abs_local"].data == widened["file_url"].data == (tmp_path / "home" / "private_recording.wav").read_bytes()
        assert widened["tar_member"].failure.error_type == "UriOutsideRule"  # chained URLs: never
        assert canary.requests == []


def test_a_manifest_on_s3_reads_no_local_file_and_requests_nothing(tmp_path, monkeypatch):
    import s3fs

    from tests.support.s3 import S3_ENV, MotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with CanaryServer() as canary, MotoServer() as endpoint:
        options = {"s3": {"endpoint_url": endpoint}}
        s3 = s3fs.S3FileSystem(endpoint_url=endpoint)
        s3.mkdir("trust")
        s3.pipe_file("trust/ds/clips/good.wav", wav_bytes())
        s3.pipe_file("trust/elsewhere/x.wav", wav_bytes(0.2))
        rows = hostile_manifest_rows(tmp_path, canary.url) + [{"id": "other_prefix", "uri": "s3://trust/elsewhere/x.wav"}]
        s3.pipe_file("trust/ds/list.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
        items = {i.id: i for i in read_all(open_source("s3://trust/ds/list.jsonl", storage_options=options))}
        assert_refused(items, wav_bytes())
        assert items["good"].uri == "s3://trust/ds/clips/good.wav"
        assert "another filesystem (file://, this data is on s3://)" in items["abs_local"].failure.message
        widened = {i.id: i for i in read_all(open_source("s3://trust/ds/list.jsonl", storage_options=options,
                                                         allow_uri_prefixes=("s3://trust/",)))}
        assert widened["other_prefix"].data == wav_bytes(0.2) and widened["abs_local"].data is None
        # a Parquet dataset on S3 whose rows carry paths and no bytes
        table = pa.Table.from_pylist([{"audio": {"bytes": None, "path": r["uri"]}, "id": r["id"]} for r in rows])
        with s3.open("trust/ds/d.parquet", "wb") as handle:
            pq.write_table(table, handle)
        parquet = {i.id: i for i in read_all(HFParquetSource("s3://trust/ds/d.parquet", storage_options=options))}
        assert parquet["good"].uri == "s3://trust/ds/clips/good.wav" and parquet["good"].data == wav_bytes()
        for id, item in parquet.items():
            if id != "good":
                assert item.data is None and item.failure.error_type == "UriOutsideRule", id
    assert canary.requests == []


def test_an_audioset_ytid_cannot_lead_out_of_the_audio_root(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "--ZhevVpy1s.wav").write_bytes(wav_bytes(60.0))  # a whole video's audio: the segment is cut from it
    csv = AUDIOSET_CSV + '../../home/private, 0.000, 10.000, "/m/09x0r"\n'
    (tmp_path / "segments.csv").write_text(csv)
    units = {u.key: u for u in open_source(str(tmp_path / "segments.csv"), audio_root=str(audio)).list_units()}
    escaped = units["../../home/private_0.000_10.000"].item
    assert escaped.failure.error_type == "UriOutsideRule" and "--audio-root" in escaped.failure.message
    whole = units["--ZhevVpy1s_50.000_60.000"].item
    assert (whole.uri, whole.start_s, whole.end_s, whole.failure) == (str(audio / "--ZhevVpy1s.wav"), 50.0, 60.0, None)
