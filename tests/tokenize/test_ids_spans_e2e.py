"""Every token row maps back to exactly one span of one source object (issue 18), and a dataset
reaches only itself (issue 21), end to end on an embedded Ray: one file at a time into one output,
a tar folder resumed under other spellings, duplicates inside containers, `datasets`' own Parquet,
segment spans checked against the spot check's original, an output of the old id rule refused,
and a manifest on S3 naming local files and a canary server."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.errors import OutputError
from pipeline.output.folder import FINGERPRINT_FILE
from pipeline.report.config import SpotCheckConfig
from pipeline.report.decode import DecodeOutcome, DecodeResult
from pipeline.report.spot_check import run_spot_check
from pipeline.tokenize.config import TokenizeConfig
from tests.support.audio import flac_bytes, make_tone, wav_bytes
from tests.support.canary import CanaryServer, hostile_uris, write_canary_file, write_canary_tar
from tests.support.outputs import assert_each_id_once, read_output
from tests.support.runs import tokenize

CHUNK_WINDOWS = 2  # 20.48 s chunks


def config(source, output, small_checkpoint, **extra) -> TokenizeConfig:
    base = {"source": str(source), "output": str(output), "checkpoint": str(small_checkpoint), "token_rate": 100,
            "semantic_vocab_size": 4096, "max_batch_windows": 4, "rows_per_file": 4, "chunk_windows": CHUNK_WINDOWS}
    return TokenizeConfig(**{**base, **extra})


def test_one_file_at_a_time_into_one_output(ray_local, small_checkpoint, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for n, name in enumerate(("a.wav", "b.flac")):
        sf.write(clips / name, make_tone(0.6, seed=n)[0], 16000)
    out = tmp_path / "out"
    tokenize(config(clips / "a.wav", out, small_checkpoint), progress=False)
    tokenize(config(f"file://{clips}/b.flac", out, small_checkpoint), progress=False)
    tokens, failures, run_record = read_output(out)
    assert_each_id_once(tokens, failures, {"a.wav", "b.flac"})
    assert {r["id"]: r["uri"] for r in tokens} == {n: str(clips / n) for n in ("a.wav", "b.flac")}
    assert run_record["counts"]["tokenized"] == 2


def test_a_tar_folder_resumed_under_other_spellings_adds_nothing(ray_local, small_checkpoint, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav_bytes())
    with tarfile.open(shards / "a.tar", "w") as tar:
        for name, payload in (("converted/es_frase.aiff", flac_bytes(0.5, 1)), ("converted/es_frase.flac", flac_bytes(0.5, 2)),
                              ("k.wav", flac_bytes(0.5, 3)), ("k.json", b'{"text": "hi"}'), ("dup.wav", flac_bytes(0.4, 4)),
                              ("dup.wav", flac_bytes(0.7, 5))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo("link.wav")
        link.type, link.linkname = tarfile.SYMTYPE, str(secret)
        tar.addfile(link)
    with tarfile.open(shards / "b.tar", "w") as tar:
        info = tarfile.TarInfo("k.wav")
        payload = flac_bytes(0.5, 6)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "out"
    expected = {"a.tar/converted/es_frase.aiff", "a.tar/converted/es_frase.flac", "a.tar/k", "a.tar/dup", "b.tar/k",
                "a.tar#5", "a.tar#6"}
    for n, spelling in enumerate((f"{shards}/", f"{shards}/*.tar", f"file://{shards}")):
        run_record = tokenize(config(spelling, out, small_checkpoint), progress=False)
        tokens, failures, _ = read_output(out)
        assert_each_id_once(tokens, failures, expected)
        if n:  # a resume under another spelling: the same ids, nothing read again
            assert run_record["run"]["rows_this_run"] == 0, spelling
    rows = {r["id"]: r for r in tokens}
    assert json.loads(rows["a.tar/k"]["meta"]) == {"text": "hi"}
    assert rows["a.tar/dup"]["duration_s"] == pytest.approx(0.4)  # the first copy keeps the id
    failed = {r["id"]: r for r in failures}
    assert failed["a.tar#5"]["error_type"] == "DuplicateId" and "member 4 ('dup.wav') of a.tar" in failed["a.tar#5"]["message"]
    assert failed["a.tar#6"]["error_type"] == "UnsupportedTarMember" and "symbolic link" in failed["a.tar#6"]["message"]


def test_parquet_duplicates_and_a_dataset_written_by_datasets(ray_local, small_checkpoint, tmp_path):
    import datasets

    folder = tmp_path / "ds"
    (folder / "clips").mkdir(parents=True)
    paths = []
    for n in range(2):
        path = folder / "clips" / f"c{n}.flac"
        path.write_bytes(flac_bytes(0.5, n))
        paths.append(str(path))
    built = datasets.Dataset.from_dict({"audio": paths, "id": ["c0", "c1"]}).cast_column("audio", datasets.Audio())
    built.to_parquet(str(folder / "train-0.parquet"))
    rows = [{"audio": {"bytes": flac_bytes(0.4 + 0.1 * n, 10 + n), "path": None}, "id": id}
            for n, id in enumerate(["d1", "d2", "d1", "c1"])]
    pq.write_table(pa.Table.from_pylist(rows), folder / "train-1.parquet")
    out = tmp_path / "out"
    tokenize(config(folder / "*.parquet", out, small_checkpoint), progress=False)
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, {"c0", "c1", "d1", "d2", "train-1.parquet#2", "train-1.parquet#3"})
    by_id = {r["id"]: r for r in tokens}
    assert by_id["c0"]["uri"] == paths[0] and by_id["d1"]["duration_s"] == pytest.approx(0.4)
    failed = {r["id"]: r["message"] for r in failures}
    assert "'d1' at row 2 of train-1.parquet is already taken by row 0 of train-1.parquet" in failed["train-1.parquet#2"]
    assert "'c1' at row 3 of train-1.parquet is already taken by row 1 of train-0.parquet" in failed["train-1.parquet#3"]
    out_first = tmp_path / "out_first"
    tokenize(config(folder / "*.parquet", out_first, small_checkpoint, dedupe="first"), progress=False)
    tokens, failures, _ = read_output(out_first)
    assert_each_id_once(tokens, failures, {"c0", "c1", "d1", "d2"})


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def _noise_decode(spec, requests, progress=None) -> DecodeOutcome:
    rng = np.random.default_rng(0)
    return DecodeOutcome({r.index: DecodeResult(0.01 * rng.standard_normal(len(r.tokens) * 320).astype(np.float32),
                                                "ok", None, 0.0) for r in requests}, in_process=False)


def test_every_row_records_its_span_and_the_spot_check_compares_that_span(ray_local, small_checkpoint, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    long = (0.1 * np.random.default_rng(7).standard_normal(45 * 16000)).astype(np.float32)  # no two spans alike
    sf.write(data / "long.wav", long, 16000)
    sf.write(data / "short.flac", make_tone(1.0, 44100, seed=8)[0], 44100, format="FLAC")
    (data / "list.csv").write_text("id,uri,start_s,end_s\nlong_20_30,long.wav,20,30\nlong_whole,long.wav,,\n"
                                   "short,short.flac,,\nlong_5_29,long.wav,5,29\n")
    out = tmp_path / "out"
    tokenize(config(data / "list.csv", out, small_checkpoint), progress=False)
    tokens, failures, _ = read_output(out)
    assert not failures
    spans = {(r["id"], r["chunk_index"]): (r["source_start_s"], r["source_end_s"]) for r in tokens}
    expected = {
        ("long_20_30", 0): (20.0, 30.0), ("short", 0): (0.0, 1.0),
        ("long_whole", 0): (0.0, 20.48), ("long_whole", 1): (20.48, 40.96), ("long_whole", 2): (40.96, 45.0),
        ("long_5_29", 0): (5.0, 25.48), ("long_5_29", 1): (25.48, 29.0),
    }
    assert spans.keys() == expected.keys()
    for key, span in expected.items():
        assert spans[key] == pytest.approx(span), key
    for row in tokens:
        assert row["source_end_s"] - row["source_start_s"] == pytest.approx(row["duration_s"])

    report_dir = tmp_path / "report"
    report = run_spot_check(SpotCheckConfig(tokens=str(out), report=str(report_dir), samples=len(tokens),
                                            checkpoint=str(small_checkpoint), max_decode_s=0,
                                            allow_uri_prefix=[str(data)]),
                            decode_fn=_noise_decode, progress=False)
    checked = 0
    for sample in report["samples"]:
        if sample["id"] == "short":
            continue  # 44.1 kHz: resampled, compared below only for the 16 kHz file
        original, rate = sf.read(report_dir / sample["audio"]["original"], dtype="float32")
        start = round(sample["source_start_s"] * 16000)
        true_span = long[start:start + len(original)]
        assert rate == 16000 and len(original) == round(sample["duration_s"] * 16000), sample["id"]
        assert _correlation(original, true_span) > 0.999, sample["id"]
        assert not any("compared from the file's start" in note for note in sample["notes"])
        if start:
            assert _correlation(original, long[:len(original)]) < 0.5, sample["id"]
        checked += 1
    assert checked == len(tokens) - 1


def test_an_output_made_with_the_old_id_rule_is_refused_on_resume(ray_local, small_checkpoint, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "a.wav", make_tone(0.5)[0], 16000)
    out = tmp_path / "out"
    tokenize(config(clips, out, small_checkpoint), progress=False)
    fingerprint = json.loads((out / FINGERPRINT_FILE).read_text())
    assert fingerprint["id_rule"] == 2
    del fingerprint["id_rule"]  # as the first id rule's runs wrote it
    (out / FINGERPRINT_FILE).write_text(json.dumps(fingerprint))
    with pytest.raises(OutputError) as caught:
        tokenize(config(clips, out, small_checkpoint), progress=False)
    message = str(caught.value)
    assert "\n" not in message and "id_rule: output has 1, this run 2" in message and "--overwrite" in message
    tokenize(config(clips, out, small_checkpoint, overwrite=True), progress=False)


def test_a_manifest_on_s3_tokenizes_only_its_own_audio(ray_local, small_checkpoint, tmp_path, monkeypatch):
    import s3fs

    from tests.support.s3 import S3_ENV, MotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    canary_file = write_canary_file(tmp_path / "home")
    canary_tar = write_canary_tar(tmp_path / "home")
    with CanaryServer() as canary, MotoServer() as endpoint:
        s3 = s3fs.S3FileSystem(endpoint_url=endpoint)
        s3.mkdir("trust-run")
        s3.pipe_file("trust-run/ds/clips/good.flac", flac_bytes(0.5, 1))
        hostile = hostile_uris(canary_file, canary_tar, canary.url)
        rows = [{"id": id, "uri": uri} for id, uri in hostile.items()] + [{"id": "good", "uri": "clips/good.flac"}]
        s3.pipe_file("trust-run/ds/list.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
        out = tmp_path / "out"
        tokenize(config("s3://trust-run/ds/list.jsonl", out, small_checkpoint, s3_endpoint_url=endpoint),
                     progress=False)
        assert canary.requests == []
    tokens, failures, _ = read_output(out, with_retryable=True)
    assert_each_id_once(tokens, failures, {"good", *hostile})
    assert [r["id"] for r in tokens] == ["good"]
    assert {r["id"]: (r["stage"], r["error_type"]) for r in failures} == {id: ("read", "UriOutsideRule") for id in hostile}
    assert all("the URI rule" in r["message"] for r in failures)
