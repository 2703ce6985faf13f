"""Issue 18 without Ray: one listing rule (the same data gives the same ids however the source is
spelled, locally and on the moto S3 server), a single file's id, tar keys with several audio
members, duplicates inside containers, non-regular tar members, `datasets`' own Audio columns,
and Parquet values too large to read."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import SourceError
from pipeline.sources import FilesSource, HFParquetSource, TarSource, dedupe_units, list_work, open_source
from pipeline.sources.listing import MAX_RECURSIVE_WILDCARDS, list_files
from tests.support.audio import wav_bytes

REPO = Path(__file__).resolve().parents[2]


def read_all(source):
    return [item for unit in source.list_units() for item in source.read_unit(unit)]


def ids_of(source) -> list[str]:
    return sorted(item.id for item in read_all(source))


def add_members(tar: tarfile.TarFile, members) -> None:
    for name, payload in members:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def write_shard(path: Path, members) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        add_members(tar, members)


def hf_rows(ids, seconds=0.3) -> pa.Table:
    return pa.Table.from_pylist([{"audio": {"bytes": wav_bytes(seconds + 0.1 * n), "path": f"{i}.wav"}, "id": i}
                                 for n, i in enumerate(ids)])


def write_dataset(root: Path) -> None:
    """Audio files two levels deep, tar shards and Parquet files: one tree for every source kind."""
    for name in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"):
        path = root / "audio" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav_bytes(fmt="FLAC" if name.endswith(".flac") else "WAV"))
    write_shard(root / "shards" / "a.tar", [("k1.wav", wav_bytes()), ("d/k2.flac", wav_bytes(fmt="FLAC"))])
    write_shard(root / "shards" / "b.tar", [("k1.wav", wav_bytes())])
    (root / "parquet").mkdir()
    pq.write_table(hf_rows(["p0", "p1"]), root / "parquet" / "train-0.parquet")
    pq.write_table(pa.Table.from_pylist([{"audio": {"bytes": wav_bytes(), "path": "x.wav"}}]),
                   root / "parquet" / "train-1.parquet")


EXPECTED = {
    "files": ["a.wav", "sub/b.flac", "sub/deeper/c.wav"],
    "tar": ["a.tar/d/k2", "a.tar/k1", "b.tar/k1"],
    "parquet": ["p0", "p1", "train-1.parquet#0"],
}


def spellings(base: str) -> dict[str, list[str]]:
    """Each source kind spelled several ways: folder, folder/, glob, and (local) file:// URLs."""
    local = "://" not in base
    out = {
        "files": [f"{base}/audio", f"{base}/audio/", f"{base}/audio/**/*.*", f"{base}/audio/**"],
        "tar": [f"{base}/shards", f"{base}/shards/", f"{base}/shards/*.tar", f"{base}/shards/[ab].tar"],
        "parquet": [f"{base}/parquet", f"{base}/parquet/", f"{base}/parquet/*.parquet", f"{base}/parquet/train-*"],
    }
    if local:
        for urls in out.values():
            urls.append("file://" + urls[0])
    return out


def test_the_same_data_gives_the_same_ids_however_it_is_spelled(tmp_path):
    write_dataset(tmp_path)
    for kind, urls in spellings(str(tmp_path)).items():
        for url in urls:
            assert ids_of(open_source(url)) == EXPECTED[kind], (kind, url)


def test_the_same_ids_on_s3_as_locally(tmp_path, monkeypatch):
    import s3fs

    from tests.support.s3 import S3_ENV, MotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    write_dataset(tmp_path)
    with MotoServer() as endpoint:
        options = {"s3": {"endpoint_url": endpoint}}
        s3 = s3fs.S3FileSystem(endpoint_url=endpoint)
        s3.mkdir("ids-bucket")
        for path in tmp_path.rglob("*"):
            if path.is_file():
                s3.pipe_file(f"ids-bucket/data/{path.relative_to(tmp_path)}", path.read_bytes())
        for kind, urls in spellings("s3://ids-bucket/data").items():
            for url in urls:
                assert ids_of(open_source(url, storage_options=options)) == EXPECTED[kind], (kind, url)
        single = open_source("s3://ids-bucket/data/shards/a.tar", storage_options=options)
        assert ids_of(single) == ["a.tar/d/k2", "a.tar/k1"]


def test_a_single_file_is_named_by_its_file_name(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("a.wav", "b.wav"):
        (tmp_path / "clips" / name).write_bytes(wav_bytes())
    for url in (str(tmp_path / "clips" / "a.wav"), f"file://{tmp_path}/clips/a.wav"):
        [unit] = open_source(url).list_units()
        assert (unit.key, unit.item.id, unit.uri) == ("a.wav", "a.wav", str(tmp_path / "clips" / "a.wav"))
    assert [u.key for u in FilesSource(str(tmp_path / "clips" / "b.wav")).list_units()] == ["b.wav"]
    listing = list_files(str(tmp_path / "clips" / "a.wav"), None, keep=lambda p: False)
    assert (listing.root, listing.paths) == (str(tmp_path / "clips"), [str(tmp_path / "clips" / "a.wav")])


def test_a_glob_with_too_many_recursive_wildcards_is_refused_before_listing(tmp_path, monkeypatch):
    import fsspec.spec

    def never(*args, **kwargs):
        raise AssertionError("the pattern reached fsspec")

    monkeypatch.setattr(fsspec.spec.AbstractFileSystem, "glob", never)
    pattern = str(tmp_path) + "/**" * 20 + "/*.wav"
    for make in (lambda: open_source(pattern), lambda: FilesSource(pattern).list_units()):
        with pytest.raises(SourceError, match=f"has 20 '\\*\\*' segments; at most {MAX_RECURSIVE_WILDCARDS}") as caught:
            make()
        assert "\n" not in str(caught.value)


# --- tar: several audio members per key, duplicates, links and devices ------------------------------

def test_a_key_with_several_audio_members_gives_one_input_each(tmp_path):
    write_shard(tmp_path / "s.tar", [
        ("converted/es_frase.aiff", wav_bytes(fmt="AIFF")), ("converted/es_frase.mka", b"matroska bytes"),
        ("converted/es_frase.json", b'{"text": "hola"}'), ("solo.wav", wav_bytes()),
    ])
    items = {i.id: i for i in read_all(TarSource(str(tmp_path / "s.tar")))}
    assert set(items) == {"s.tar/converted/es_frase.aiff", "s.tar/converted/es_frase.mka", "s.tar/solo"}
    aiff, mka = items["s.tar/converted/es_frase.aiff"], items["s.tar/converted/es_frase.mka"]
    assert aiff.uri.endswith("s.tar#converted/es_frase.aiff") and mka.uri.endswith("s.tar#converted/es_frase.mka")
    assert aiff.meta == mka.meta == {"text": "hola"} and mka.data == b"matroska bytes"


def test_a_member_twice_in_a_shard_is_a_failure_naming_both_places(tmp_path):
    write_shard(tmp_path / "s.tar", [("x.wav", wav_bytes(0.3)), ("x.wav", wav_bytes(0.6)), ("y.wav", wav_bytes()),
                                     ("z.wav", wav_bytes()), ("y.wav", wav_bytes(0.7))])
    items = read_all(TarSource(str(tmp_path / "s.tar")))
    good = [i for i in items if i.failure is None]
    assert [(i.id, len(i.data)) for i in good] == [("s.tar/x", len(wav_bytes(0.3))), ("s.tar/y", len(wav_bytes())),
                                                   ("s.tar/z", len(wav_bytes()))]
    failures = {i.id: i.failure for i in items if i.failure is not None}
    assert set(failures) == {"s.tar#1", "s.tar#4"}  # the later copies, under their position in the shard
    for position, first in (("s.tar#1", "member 0 ('x.wav')"), ("s.tar#4", "member 2 ('y.wav')")):
        failure = failures[position]
        assert failure.error_type == "DuplicateId" and not failure.retryable
        assert f"{first} of s.tar" in failure.message and f"member {position[-1]}" in failure.message
    kept = read_all(TarSource(str(tmp_path / "s.tar"), dedupe="first"))
    assert [i.id for i in kept] == ["s.tar/x", "s.tar/y", "s.tar/z"] and all(i.failure is None for i in kept)


def test_links_fifos_and_devices_in_a_shard_are_recorded_not_followed(tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav_bytes())
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        add_members(tar, [("ok.wav", wav_bytes())])
        for name, kind, target in (("sym.wav", tarfile.SYMTYPE, str(secret)), ("hard.wav", tarfile.LNKTYPE, "ok.wav"),
                                   ("pipe.wav", tarfile.FIFOTYPE, ""), ("dev.wav", tarfile.CHRTYPE, ""),
                                   ("blk.wav", tarfile.BLKTYPE, "")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
        info = tarfile.TarInfo("folder")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    items = read_all(TarSource(str(tmp_path / "s.tar")))
    assert [i.id for i in items if i.failure is None] == ["s.tar/ok"]
    failures = {i.id: i.failure for i in items if i.failure is not None}
    assert sorted(failures) == ["s.tar#1", "s.tar#2", "s.tar#3", "s.tar#4", "s.tar#5"]  # the folder is no input
    assert {f.error_type for f in failures.values()} == {"UnsupportedTarMember"}
    assert "'sym.wav' is a symbolic link to " in failures["s.tar#1"].message
    assert "a hard link" in failures["s.tar#2"].message and "a FIFO" in failures["s.tar#3"].message
    assert "a character device" in failures["s.tar#4"].message and "a block device" in failures["s.tar#5"].message
    assert all(i.data != secret.read_bytes() or i.id == "s.tar/ok" for i in items)


# --- Parquet: duplicates across rows and files -----------------------------------------------------

def test_parquet_duplicate_ids_are_failures_naming_both_places_across_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(hf_rows(["a", "b", "a"]), folder / "0.parquet", row_group_size=2)
    pq.write_table(hf_rows(["c", "b"]), folder / "1.parquet")
    units = dedupe_units(list_work(HFParquetSource(str(folder))), "refuse")  # containers: no refusal at listing
    source = HFParquetSource(str(folder))
    items = [item for unit in units for item in source.read_unit(unit)]
    assert [i.id for i in items if i.failure is None] == ["a", "b", "c"]
    failures = {i.id: i.failure for i in items if i.failure is not None}
    assert set(failures) == {"0.parquet#2", "1.parquet#1"}
    assert "'a' at row 2 of 0.parquet is already taken by row 0 of 0.parquet" in failures["0.parquet#2"].message
    assert "'b' at row 1 of 1.parquet is already taken by row 1 of 0.parquet" in failures["1.parquet#1"].message
    assert {f.error_type for f in failures.values()} == {"DuplicateId"}
    first = HFParquetSource(str(folder), dedupe="first")
    assert [i.id for i in read_all(first)] == ["a", "b", "c"]
    kept = {i.id: i for i in read_all(first)}
    assert kept["a"].uri.endswith("0.parquet#row=0") and kept["b"].uri.endswith("0.parquet#row=1")


# --- `datasets`' own Audio columns: a path and no bytes ---------------------------------------------

def test_a_dataset_written_by_datasets_reads_its_paths(tmp_path):
    import datasets

    clips = tmp_path / "ds" / "clips"
    clips.mkdir(parents=True)
    paths = []
    for n in range(3):
        (clips / f"c{n}.wav").write_bytes(wav_bytes(0.2 + 0.1 * n))
        paths.append(str(clips / f"c{n}.wav"))
    table = datasets.Dataset.from_dict({"audio": paths, "id": ["c0", "c1", "c2"]}).cast_column("audio", datasets.Audio())
    table.to_parquet(str(tmp_path / "ds" / "train.parquet"))
    assert pq.read_table(tmp_path / "ds" / "train.parquet")["audio"].to_pylist()[0]["bytes"] is None
    items = read_all(open_source(str(tmp_path / "ds" / "train.parquet")))
    assert [(i.id, i.uri, i.data) for i in items] == [(f"c{n}", paths[n], (clips / f"c{n}.wav").read_bytes())
                                                      for n in range(3)]
    # relative paths are read from the Parquet file's folder
    rows = [{"audio": {"bytes": None, "path": "clips/c1.wav"}, "id": "rel"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ds" / "rel.parquet")
    [item] = read_all(HFParquetSource(str(tmp_path / "ds" / "rel.parquet")))
    assert item.failure is None and item.uri == paths[1] and item.data == (clips / "c1.wav").read_bytes()


def test_a_dataset_path_outside_the_dataset_is_a_failure_row_unless_allowed(tmp_path):
    secret = tmp_path / "home" / "private.wav"
    secret.parent.mkdir()
    secret.write_bytes(wav_bytes())
    (tmp_path / "ds").mkdir()
    rows = [{"audio": {"bytes": None, "path": str(secret)}, "id": "abs"},
            {"audio": {"bytes": None, "path": "../home/private.wav"}, "id": "up"},
            {"audio": {"bytes": None, "path": f"file://{secret}"}, "id": "url"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ds" / "d.parquet")
    items = read_all(HFParquetSource(str(tmp_path / "ds" / "d.parquet")))
    assert [(i.id, i.failure.error_type, i.data) for i in items] == [(r["id"], "UriOutsideRule", None) for r in rows]
    assert all("the URI rule" in i.failure.message and "--allow-uri-prefix" in i.failure.message for i in items)
    widened = read_all(HFParquetSource(str(tmp_path / "ds" / "d.parquet"), allow_uri_prefixes=(str(tmp_path / "home"),)))
    assert [i.data for i in widened] == [secret.read_bytes()] * 3


# --- bounded memory: a Parquet value too large is refused before it is decompressed -------------------

BOUNDED_READ = """
import json, resource, sys
import pyarrow.parquet
import pipeline.sources.hf_parquet as hp
hp.PIECE_BYTES, hp.MAX_VALUE_BYTES = 4 << 20, 32 << 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
items = [(i.id, i.failure.error_type if i.failure else None, len(i.data or b""))
         for unit in hp.HFParquetSource(sys.argv[1]).list_units() for i in hp.HFParquetSource(sys.argv[1]).read_unit(unit)]
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"items": items, "grown_mb": grown}))
"""


LAYOUTS = {"one row group": {"row_group_size": 3}, "a row group per row": {"row_group_size": 1},
           "a page per row": {"write_batch_size": 1, "data_page_size": 1, "use_dictionary": False}}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_huge_parquet_value_is_refused_before_it_is_materialised(tmp_path, layout):
    """A zstd file of a few KB whose second row decompresses to 200 MB (the limit is lowered to 32 MB
    here, with 4 MB pieces): the reader's peak memory stays far below the value."""
    small = wav_bytes(0.2)
    rows = pa.table({"audio": pa.array([{"bytes": small, "path": "a"}, {"bytes": b"\0" * (200 << 20), "path": "b"},
                                        {"bytes": small, "path": "c"}]), "id": ["r0", "huge", "r2"]})
    path = tmp_path / "bomb.parquet"
    pq.write_table(rows, path, compression="zstd", **LAYOUTS[layout])
    del rows
    assert path.stat().st_size < 1 << 20
    done = subprocess.run([sys.executable, "-c", BOUNDED_READ, str(path)], capture_output=True, text=True, cwd=REPO,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    by_id = {id: (error, size) for id, error, size in result["items"]}
    assert by_id["huge"] == ("AudioValueTooLarge", 0)
    if layout == "a row group per row":
        assert by_id["r0"] == by_id["r2"] == (None, len(small))
    elif layout == "a page per row":  # rows after the value's page cannot be reached: recorded, not lost
        assert by_id["r0"] == (None, len(small)) and by_id["r2"] == ("AudioValueTooLarge", 0)
    else:  # rows sharing the value's page, likewise
        assert set(by_id) == {"r0", "huge", "r2"} and {e for e, _ in by_id.values()} == {"AudioValueTooLarge"}
    assert result["grown_mb"] < 80, result  # the value alone is 200 MB; read whole, the peak grows by ~1 GB
    os.remove(path)


# --- a folder is listed once, its subfolders in parallel ---------------------------------------------

def test_a_folder_is_listed_once_while_telling_its_kind_and_its_subfolders_in_parallel(tmp_path, monkeypatch):
    import fsspec.implementations.local as local

    from pipeline.sources.listing import find_files

    for sub in ("a", "b", "c/d"):
        (tmp_path / "audio" / sub).mkdir(parents=True)
        (tmp_path / "audio" / sub / "x.wav").write_bytes(wav_bytes())
    (tmp_path / "audio" / "top.flac").write_bytes(wav_bytes())
    fs = local.LocalFileSystem()
    assert sorted(find_files(fs, str(tmp_path / "audio"))) == sorted(fs.find(str(tmp_path / "audio")))
    source = open_source(str(tmp_path / "audio"))

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the folder was listed again")

    monkeypatch.setattr(local.LocalFileSystem, "find", no_second_pass)
    monkeypatch.setattr(local.LocalFileSystem, "ls", no_second_pass)
    assert [u.key for u in list_work(source)] == ["a/x.wav", "b/x.wav", "c/d/x.wav", "top.flac"]
    assert "_found" not in pickle.loads(pickle.dumps(source)).__dict__  # the listing never travels to tasks


def test_a_local_folder_is_found_as_fsspec_finds_it(tmp_path):
    """`find_files` lists local folders with `os.scandir`: the same files as fsspec's `find`."""
    import fsspec

    from pipeline.sources.listing import find_files

    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "empty").mkdir()
    for path in ("top.wav", "a/x.flac", "a/b/y.mp3", "a/b/notes.txt"):
        (tree / path).write_bytes(b"x")
    os.symlink(tree / "a" / "x.flac", tree / "file-link.flac")
    os.symlink(tree / "a", tree / "folder-link")
    os.symlink(tree / "gone.wav", tree / "a" / "broken.wav")
    os.mkfifo(tree / "a" / "pipe")
    os.symlink(tree, tmp_path / "root-link")
    os.symlink(tmp_path / "gone", tmp_path / "broken-root")
    fs = fsspec.filesystem("file")
    roots = [tree, tree / "a", tree / "empty", tree / "top.wav", tmp_path / "root-link", tmp_path / "missing",
             tmp_path / "broken-root", tree / "a" / "pipe"]
    for root in map(str, roots):
        assert sorted(find_files(fs, root)) == fs.find(root), root
    assert len(fs.find(str(tree))) == 8


def test_ids_checked_as_a_column_are_those_id_problem_accepts():
    from pipeline.sources.ids import MAX_ID_CHARS, id_problem, valid_ids

    ids = [chr(point) for point in range(0x110000) if not 0xD800 <= point <= 0xDFFF]
    ids += ["", "x" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1), "é" * MAX_ID_CHARS, "a\tb", "ok id", "a\x85"]
    assert valid_ids(pa.array(ids)).to_pylist() == [id_problem(id) is None for id in ids]
    assert valid_ids(pa.array([None], pa.string())).to_pylist() == [False]


def test_ids_of_many_paths_are_what_relpath_gives():
    from pipeline.sources.listing import Listing, relative_id

    paths = ["/data/a.wav", "/data/sub/b.wav", "/data/.hidden.wav", "/data/..odd.wav", "/data//c.wav",
             "/data/./d.wav", "/data/e/../f.wav", "/data/g/", "/data", "/other/h.wav", "/data2/i.wav", "/data/日本.wav"]
    for root in ("/data", "/data/", "/", "/data//", "/da"):
        listing = Listing(None, root, paths, "")
        assert listing.ids_of(paths) == [relative_id(path, root) for path in paths], root
    bucket = ["bucket/set/a.wav", "bucket/set/x/y.wav", "bucket/other.wav"]
    for root in ("bucket/set", "bucket", ""):
        assert Listing(None, root, bucket, "s3://").ids_of(bucket) == [relative_id(p, root) for p in bucket], root
