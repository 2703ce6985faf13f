"""End to end on an embedded local Ray: every source kind, edge and bad inputs, exactly-once, resume."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.demo_audio import BAD_SAMPLES, GOOD_SAMPLES, write_samples
from pipeline.output.schema import arrow_schema
from pipeline.tokenize.config import TokenizeConfig
from tests.support.audio import flac_bytes
from tests.support.audioset import AUDIOSET_CSV, CLASS_LABELS
from tests.support.outputs import assert_each_id_once, read_output, tokens_by_id, validate_run_record
from tests.support.runs import tokenize

CHUNK_WINDOWS = 2  # 20.48 s chunks, so the 40 s sample is cut in two


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


@pytest.fixture(scope="module")
def codec(small_checkpoint):
    return SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096)


def config(source, output, small_checkpoint, **extra) -> TokenizeConfig:
    base = dict(source=str(source), output=str(output), checkpoint=str(small_checkpoint), token_rate=100,
                semantic_vocab_size=4096, max_batch_windows=4, rows_per_file=3, chunk_windows=CHUNK_WINDOWS)
    return TokenizeConfig(**{**base, **extra})


def expected_tokens(codec, path) -> list[np.ndarray]:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return codec.encode([data.T], sample_rate=rate)


def test_folder_with_edge_and_bad_inputs_and_a_manifest_miss(ray_local, samples, small_checkpoint, codec, tmp_path):
    manifest_path = tmp_path / "list.jsonl"
    names = sorted(GOOD_SAMPLES) + sorted(BAD_SAMPLES) + ["listed_but_missing.wav"]
    manifest_path.write_text("".join(json.dumps({"id": n, "uri": str(samples / n)}) + "\n" for n in names))
    out = tmp_path / "out"
    tokenize(config(manifest_path, out, small_checkpoint, allow_uri_prefix=[str(samples)]), progress=False)
    tokens, failures, run_record = read_output(out, with_retryable=True)  # the missing file is retryable
    assert_each_id_once(tokens, failures, set(names))
    assert {r["id"] for r in tokens} == set(GOOD_SAMPLES)
    messages = {r["id"]: (r["stage"], r["error_type"], r["message"]) for r in failures}
    assert messages["zero_bytes.wav"] == ("decode", "AudioDecodeError", "empty file (0 bytes)")
    assert "Format not recognised" in messages["not_audio.wav"][2]
    assert messages["truncated.flac"][1] == "AudioDecodeError"
    assert "no samples" in messages["no_samples.wav"][2]
    assert messages["listed_but_missing.wav"][:2] == ("read", "FileNotFoundError")
    # tokens are exactly what the codec gives for the same audio
    got = tokens_by_id(tokens)
    for name in GOOD_SAMPLES:
        if name.startswith("long"):
            continue
        np.testing.assert_array_equal(got[name], expected_tokens(codec, samples / name)[0], err_msg=name)
    # the long file: each 20.48 s chunk is encoded as a clip; inner chunks keep whole windows
    mono = sf.read(samples / "long_40s_16k.flac", dtype="float32")[0]
    chunk = CHUNK_WINDOWS * 163840
    first, second = codec.encode([mono[:chunk], mono[chunk:]], 16000)
    np.testing.assert_array_equal(got["long_40s_16k.flac"], np.concatenate([first[: 2 * 512], second]))
    rows = {(r["id"], r["chunk_index"]): r for r in tokens}
    assert rows[("long_40s_16k.flac", 1)]["chunk_start_s"] == pytest.approx(20.48)
    assert rows[("eight_channels_96k.wav", 0)]["source_channels"] == 8
    assert rows[("eight_channels_96k.wav", 0)]["source_sample_rate"] == 96000
    validate_run_record(run_record)
    # a missing object is not final (it may be restored): it is retryable, not a failure
    assert run_record["counts"] == {
        "inputs": 12, "tokenized": 7, "failed": 4, "retryable": 1, "incomplete": 0, "token_rows": 8,
        "token_files": run_record["counts"]["token_files"], "failure_files": run_record["counts"]["failure_files"],
        "failures_by_type": {"AudioDecodeError": 3, "AudioInputError": 1},
    }
    assert run_record["run"]["retryable_types"] == {"FileNotFoundError": 1}
    assert run_record["codec"]["synthetic_weights"] is True
    assert run_record["totals"]["tokens"] == 2 * sum(r["num_frames"] for r in tokens)


def test_resampling_on_the_encoder_gives_the_decode_paths_rows_and_tokens(ray_local, samples, small_checkpoint,
                                                                          codec, tmp_path):
    """`--resample-on encoder`: decode tasks ship resampler input spans, the encoder actor resamples
    them. Same rows and failures as resampling in the decode tasks; tokens agree with the codec's
    own encode up to the float rounding of the convolution (agreement printed)."""
    out = tmp_path / "out"
    run_record = tokenize(config(samples, out, small_checkpoint, resample_on="encoder"), progress=False)
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, set(GOOD_SAMPLES) | set(BAD_SAMPLES))
    assert {r["id"] for r in tokens} == set(GOOD_SAMPLES)
    assert run_record["run"]["config"]["resample_on"] == "encoder"
    got = tokens_by_id(tokens)
    same = total = 0
    for name in GOOD_SAMPLES:
        if name.startswith("long"):
            continue
        expected = expected_tokens(codec, samples / name)[0]
        assert got[name].shape == expected.shape, name
        same, total = same + int((got[name] == expected).sum()), total + expected.size
    rows = {(r["id"], r["chunk_index"]): r for r in tokens}
    assert rows[("eight_channels_96k.wav", 0)]["source_sample_rate"] == 96000
    print(f"resampled on the encoder vs in the decode task: {same}/{total} tokens agree")
    assert same / total >= 0.99


def test_m4a_and_webm_files_in_a_folder_are_tokenized(ray_local, small_checkpoint, codec, tmp_path):
    """AAC (.m4a) and Opus (.webm), which libsndfile cannot read, are found in a folder and tokenized
    (through FFmpeg), with the tokens the codec gives for the same decoded audio."""
    import av

    from tests.support.audio import ffmpeg_bytes, make_tone

    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "voice.m4a").write_bytes(ffmpeg_bytes(make_tone(4.0, 44100, channels=2), 44100, "mp4", "aac"))
    (folder / "music.webm").write_bytes(ffmpeg_bytes(make_tone(2.5, 48000, seed=1), 48000, "webm", "libopus"))
    out = tmp_path / "out"
    run_record = tokenize(config(folder, out, small_checkpoint), progress=False)
    tokens, failures, _ = read_output(out)
    assert not failures and run_record["counts"]["tokenized"] == 2
    got = tokens_by_id(tokens)
    for name, rate in (("voice.m4a", 44100), ("music.webm", 48000)):
        with av.open(str(folder / name)) as container:
            channel0 = np.concatenate([f.to_ndarray()[0] for f in container.decode(container.streams.audio[0])])
        np.testing.assert_array_equal(got[name], codec.encode([channel0.astype(np.float32)], rate)[0], err_msg=name)


def test_output_schema_provenance_and_readers(ray_local, samples, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    tokenize(config(samples, out, small_checkpoint), progress=False)
    files = sorted((out / "tokens").glob("part-*.parquet"))
    assert files and not list((out / "_tmp").glob("*"))
    for path in files:
        parquet = pq.ParquetFile(path)
        assert parquet.schema_arrow.remove_metadata() == arrow_schema("tokens", 1).remove_metadata()
        assert parquet.metadata.row_group(0).column(9).compression == "ZSTD"
        meta = parquet.schema_arrow.metadata
        assert meta[b"pipeline.schema_version"] == b"1"
        provenance = json.loads(meta[b"pipeline.provenance"])
        assert provenance["variant"] == "semanticodec-r100-v4096" and provenance["synthetic_weights"] is True
        assert len(provenance["files"]["encoder"]["sha256"]) == 64
        assert not {"batch_size", "max_batch_windows"} & set(provenance)  # run settings are the run record's
        assert parquet.metadata.num_rows <= 3
    import datasets
    import pyarrow.dataset as pads

    table = pads.dataset(out / "tokens", format="parquet").to_table()
    assert table.schema.field("semantic").type == pa.list_(pa.uint16())
    hf = datasets.load_dataset("parquet", data_files=[str(p) for p in files], split="train")
    assert hf.features["acoustic"].feature.dtype == "uint16" and len(hf) == table.num_rows
    ray_ds = ray_local.data.read_parquet(str(out / "tokens"))
    assert ray_ds.schema().base_schema.field("semantic").type == pa.list_(pa.uint16())
    assert ray_ds.count() == table.num_rows


def test_rerun_resumes_and_overwrite_starts_afresh(ray_local, samples, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    first = tokenize(config(samples, out, small_checkpoint), progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("*.parquet")}
    record = (out / "manifest.json").read_bytes()
    again = tokenize(config(samples, out, small_checkpoint), progress=False)
    # nothing left to do: no shard and no run record written, the first run's record kept
    assert again == first and (out / "manifest.json").read_bytes() == record
    assert {p.name: p.stat().st_mtime_ns for p in (out / "tokens").glob("*.parquet")} == before
    fresh = tokenize(config(samples, out, small_checkpoint, overwrite=True), progress=False)
    assert fresh["run"]["rows_this_run"] == first["counts"]["token_rows"] + first["counts"]["failed"]
    assert fresh["runs"] == [fresh["run"]]  # --overwrite starts the history afresh too
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, set(GOOD_SAMPLES) | set(BAD_SAMPLES))


def test_ids_are_stable_across_runs(ray_local, samples, small_checkpoint, tmp_path):
    ids = []
    for name in ("a", "b"):
        tokenize(config(samples, tmp_path / name, small_checkpoint, limit=5), progress=False)
        tokens, failures, _ = read_output(tmp_path / name)
        ids.append(sorted({r["id"] for r in tokens} | {r["id"] for r in failures}))
    assert ids[0] == ids[1] and len(ids[0]) == 5


def test_hf_parquet_source_carries_labels(ray_local, small_checkpoint, tmp_path):
    folder = tmp_path / "hf" / "data" / "bal_train"
    folder.mkdir(parents=True)
    rows = [{"video_id": f"yt{i}", "audio": {"bytes": flac_bytes(1 + i, i), "path": f"yt{i}.flac"},
             "labels": ["/m/09x0r", "/m/05zppz"][: 1 + i % 2], "human_labels": ["Speech", "Male speech"][: 1 + i % 2]}
            for i in range(4)]
    rows.append({"video_id": "broken", "audio": {"bytes": b"garbage", "path": "x.flac"}, "labels": [], "human_labels": []})
    pq.write_table(pa.Table.from_pylist(rows), folder / "part0.parquet")
    out = tmp_path / "out"
    run_record = tokenize(config(tmp_path / "hf", out, small_checkpoint, split="bal_train"), progress=False)
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, {f"yt{i}" for i in range(4)} | {"broken"})
    by_id = {r["id"]: r for r in tokens}
    assert by_id["yt1"]["labels"] == ["/m/09x0r", "/m/05zppz"] and by_id["yt1"]["human_labels"][1] == "Male speech"
    assert run_record["source"]["kind"] == "hf_parquet"


def test_tar_source(ray_local, small_checkpoint, tmp_path):
    shard = tmp_path / "shards" / "shard-0000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for i in range(3):
            for name, payload in ((f"k{i}.flac", flac_bytes(1.0, i)), (f"k{i}.json", json.dumps({"labels": [f"l{i}"]}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "out"
    tokenize(config(shard.parent, out, small_checkpoint), progress=False)
    tokens, failures, _ = read_output(out)
    assert_each_id_once(tokens, failures, {f"shard-0000.tar/k{i}" for i in range(3)})
    assert not failures and {tuple(r["labels"]) for r in tokens} == {("l0",), ("l1",), ("l2",)}


def test_audioset_csv_source(ray_local, small_checkpoint, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "--PJHxphWEs_30.000_40.000.flac").write_bytes(flac_bytes(2.0, 1))
    (audio / "--ZhevVpy1s.flac").write_bytes(flac_bytes(61.0, 2))  # the whole video: its 50-60 s are cut
    (tmp_path / "segments.csv").write_text(AUDIOSET_CSV)
    (tmp_path / "labels.csv").write_text(CLASS_LABELS)
    out = tmp_path / "out"
    tokenize(config(tmp_path / "segments.csv", out, small_checkpoint, audio_root=str(audio),
                        class_labels=str(tmp_path / "labels.csv")), progress=False)
    tokens, failures, _ = read_output(out, with_retryable=True)  # a segment without a file may appear later
    assert_each_id_once(tokens, failures, {"--PJHxphWEs_30.000_40.000", "--ZhevVpy1s_50.000_60.000", "missingYTID_0.000_10.000"})
    assert [r["id"] for r in failures] == ["missingYTID_0.000_10.000"]
    by_id = {r["id"]: r for r in tokens}
    assert "--PJHxphWEs" in by_id["--PJHxphWEs_30.000_40.000"]["id"]
    assert by_id["--PJHxphWEs_30.000_40.000"]["human_labels"] == ["Speech", "Gush"]
    spans = {id: (row["source_start_s"], row["source_end_s"], row["duration_s"]) for id, row in by_id.items()}
    assert spans["--PJHxphWEs_30.000_40.000"] == pytest.approx((0.0, 2.0, 2.0))  # the file is the segment
    assert spans["--ZhevVpy1s_50.000_60.000"] == pytest.approx((50.0, 60.0, 10.0))


def test_odd_file_names_give_safe_stable_ids(ray_local, small_checkpoint, tmp_path):
    audio = tmp_path / "audio"
    (audio / "sub folder").mkdir(parents=True)
    names = ["with space.flac", "ünïcödé 音.flac", "..dots...flac", "sub folder/../x.flac"]
    for i, name in enumerate(names):
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        (audio / name).write_bytes(flac_bytes(0.5, i))
    expected = {"with space.flac", "ünïcödé 音.flac", "..dots...flac", "x.flac"}
    out = tmp_path / "out"
    for _ in range(2):  # the same ids on a second run (which then has nothing to do)
        tokenize(config(audio, out, small_checkpoint, overwrite=_ == 0), progress=False)
        tokens, failures, _run_record = read_output(out)
        assert_each_id_once(tokens, failures, expected)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(audio)]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert all(p.name.startswith("part-") or p.name in ("manifest.json", "README.md", "_fingerprint.json")
               for p in written)
