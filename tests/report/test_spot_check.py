"""The QA spot check (jobs/spot_check.py) on a small corpus with planted bad rows, and
its HTML report rendered in headless Chromium.

The corpus: two clips encoded with the small synthetic rate-100 checkpoint (`synthetic:small`, with
its small decoder), plus planted rows: a degenerate row (one semantic id throughout), a length mismatch (num_frames
disagrees with the token lists and the duration), a row whose uri does not exist, and a row with
acoustic id 9000 (vocabulary 8192) whose uri is a tar member (cannot be fetched directly).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.codecs.semanticodec.lengths import row_token_count
from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location
from pipeline.output.folder import OutputFolder, failures_table, tokens_table
from pipeline.output.schema import SCHEMA_DIR
from pipeline.report.config import SpotCheckConfig
from pipeline.report.flags import report_exit_code
from pipeline.report.picks import choose_picks
from pipeline.sources.uri_rule import UriRule

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SPEECH, MUSIC = "clips/speech.wav", "clips/music.flac"
PLANTED = {"degenerate": "planted/degenerate", "mismatch": "planted/mismatch",
           "unknown": "planted/unknown_uri", "oov": "planted/oov"}


def _clip(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    base = 0.3 * np.sin(2 * np.pi * (180 + 90 * seed) * t * (1 + 0.5 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.stack([base * (1 - 0.2 * c) + 0.02 * rng.standard_normal(t.size) for c in range(channels)], 1).astype(np.float32)


def _row(id_, uri, tokens, duration, rate, channels, labels, human, **overrides) -> dict:
    row = {"id": id_, "uri": uri, "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0, "duration_s": duration,
           "source_sample_rate": rate, "source_channels": channels, "num_frames": len(tokens),
           "semantic": tokens[:, 0].astype(np.uint16), "acoustic": tokens[:, 1].astype(np.uint16),
           "labels": labels, "human_labels": human}
    row.update(overrides)
    return row


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from pipeline.codecs.semanticodec import SemantiCodec

    root = resolve_checkpoint_location("synthetic:small", 100, 4096, with_decoder=True)
    codec = SemantiCodec.from_pretrained(root, token_rate=100, semantic_vocab_size=4096)
    folder = tmp_path_factory.mktemp("qa")
    (folder / "clips").mkdir()
    speech, music = _clip(1.0, 16000, 1, 0), _clip(1.5, 22050, 2, 1)
    sf.write(folder / SPEECH, speech, 16000, subtype="PCM_16")
    sf.write(folder / MUSIC, music, 22050, format="FLAC", subtype="PCM_24")
    speech_tok, music_tok = codec.encode([speech.T, music.T], sample_rate=[16000, 22050])
    speech_uri, music_uri = str(folder / SPEECH), str(folder / MUSIC)
    sp = (["/m/09x0r"], ["Speech"])
    mu = (["/m/04rlf"], ["Music"])
    degenerate = speech_tok.copy()
    degenerate[:, 0] = 7
    oov = speech_tok.copy()
    oov[3, 1] = 9000
    shard_a = [
        _row(SPEECH, speech_uri, speech_tok, 1.0, 16000, 1, *sp),
        _row(PLANTED["degenerate"], speech_uri, degenerate, 1.0, 16000, 1, *sp),
        _row(PLANTED["oov"], str(folder / "shards" / "shard-0000.tar") + "#k9.flac", oov, 1.0, 16000, 1, *mu),
    ]
    shard_b = [
        _row(MUSIC, music_uri, music_tok, 1.5, 22050, 2, *mu),
        _row(PLANTED["mismatch"], music_uri, music_tok, 1.5, 22050, 2, *mu, num_frames=200),
        _row(PLANTED["unknown"], str(folder / "clips" / "does_not_exist.wav"), speech_tok, 1.0, 16000, 1, *sp),
    ]
    out = OutputFolder(str(folder / "tokens"))
    provenance = {**codec.provenance.to_dict(), "pipeline_version": "test"}
    for rows in (shard_a, shard_b):
        out.write_shard("tokens", tokens_table(rows), provenance)
    out.write_shard("failures", failures_table([
        {"id": "broken.wav", "uri": "/x/broken.wav", "stage": "decode", "error_type": "AudioDecodeError", "message": "bad"},
        {"id": "gone.wav", "uri": "/x/gone.wav", "stage": "read", "error_type": "FileNotFoundError", "message": "gone"},
    ]))
    return {"folder": folder, "rows": shard_a + shard_b, "tokens": folder / "tokens"}


@pytest.fixture(scope="module")
def report(corpus):
    report_dir = corpus["folder"] / "report"
    command = [sys.executable, str(REPO / "jobs" / "spot_check.py"), "--tokens", str(corpus["tokens"]),
               "--report", str(report_dir), "--samples", "6", "--ddim-steps", "2", "--seed", "3", "--quiet",
               "--allow-uri-prefix", str(corpus["folder"] / "clips")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=corpus["folder"])
    return {"dir": report_dir, "process": done, "json": json.loads((report_dir / "report.json").read_text())
            if (report_dir / "report.json").exists() else None}


def _by_id(entries):
    return {e["id"]: e for e in entries}


def test_spot_check_reports_bad_rows_and_metrics(corpus, report):
    import jsonschema

    done = report["process"]
    data = report["json"]
    # the planted rows are flagged as errors: the job says so with its exit code (issue 13), and the
    # report is written all the same; stdout carries only the JSON summary, the report path is on stderr
    assert data is not None, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == report_exit_code(data) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "index.html" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["summary"]["rows"] == 6
    jsonschema.validate(data, json.loads((SCHEMA_DIR / "qa_report.v1.json").read_text()))

    # whole-corpus token statistics cover every row, without decoding
    rows = corpus["rows"]
    stats = data["token_stats"]
    assert stats["rows"] == len(rows) == 6 and stats["shards"] == 2
    assert stats["frames"] == sum(len(r["semantic"]) for r in rows)
    semantic_ids = np.concatenate([r["semantic"] for r in rows])
    assert stats["streams"]["semantic"]["tokens"] == semantic_ids.size
    assert stats["streams"]["semantic"]["distinct_ids"] == len(np.unique(semantic_ids))
    assert stats["streams"]["acoustic"]["out_of_vocab_tokens"] == 1
    assert 0 < stats["streams"]["acoustic"]["utilisation"] <= 1
    assert stats["tokens_per_second"]["expected_pairs_per_s"] == 50

    # planted rows are flagged / reported as such
    assert [r["id"] for r in stats["degenerate_rows"]["rows"]] == [PLANTED["degenerate"]]
    assert stats["degenerate_rows"]["rows"][0]["streams"] == ["semantic"]
    assert [r["id"] for r in stats["length_mismatches"]["rows"]] == [PLANTED["mismatch"]]
    assert [r["id"] for r in stats["out_of_vocab_rows"]["rows"]] == [PLANTED["oov"]]
    assert stats["out_of_vocab_rows"]["rows"][0]["max_ids"] == {"acoustic": 9000}
    assert [(r["id"], r["status"]) for r in data["uris"]["rows"]] == [(PLANTED["unknown"], "missing")]
    assert data["uris"]["archive_member_rows"] == 1
    assert data["failures"]["by_type"] == {"AudioDecodeError": 1, "FileNotFoundError": 1}
    flags = {f["kind"]: f for f in data["flags"]}
    for kind in ("degenerate_rows", "length_mismatch", "out_of_vocab", "unknown_uri", "failures",
                 "synthetic_weights", "decode_errors"):
        assert kind in flags, (kind, sorted(flags))
    assert flags["failures"]["count"] == 2

    # every row was picked (6 of 6); the bad ones are reported, the good ones compared
    picks = _by_id(data["samples"])
    assert set(picks) == {r["id"] for r in rows}
    oov = picks[PLANTED["oov"]]
    assert oov["status"] == "bad_tokens" and "acoustic ids must be in [0, 8192)" in oov["error"]
    assert "archive member" in oov["original"]["reason"]
    unknown = picks[PLANTED["unknown"]]
    assert unknown["status"] == "original_unavailable" and "unknown uri" in unknown["original"]["reason"]
    assert unknown["audio"]["decoded"] and not unknown["metrics"]
    for name in (SPEECH, MUSIC, PLANTED["degenerate"], PLANTED["mismatch"]):
        pick = picks[name]
        assert pick["status"] == "ok", pick
        for metric in ("log_mel_distance", "mrstft_distance"):
            assert math.isfinite(pick["metrics"][metric]) and pick["metrics"][metric] > 0
        for key in ("original", "decoded"):
            wave, rate = sf.read(report["dir"] / pick["audio"][key])
            assert rate == 16000 and len(wave) > 0
        assert (report["dir"] / pick["spectrogram"]).stat().st_size > 5000
    assert picks[SPEECH]["speech"] and not picks[MUSIC]["speech"]
    assert abs(picks[MUSIC]["metrics"]["compared_s"] - 1.5) < 0.01
    assert data["aggregate"]["metrics"]["log_mel_distance"]["count"] == 4
    assert "ViSQOL" in data["metric_notes"]["visqol"]
    for path in data["files"]["figures"].values():
        assert path and (report["dir"] / path).stat().st_size > 5000


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_renders_in_headless_chromium(report, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Chromium (apt-get install -y chromium; `make setup` does it) "
                    "to check the rendered report")
    assert report["json"] is not None, report["process"].stderr[-3000:]
    index = report["dir"] / "index.html"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--mute-audio", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    done = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,2000", index.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot: {done.stderr[-2000:]}"
    shutil.copy(shot, report["dir"] / "report.png")
    assert _png_size(shot) == (1280, 2000)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert shot.stat().st_size > 30_000 and pixels[..., :3].std() > 0.05, "the screenshot looks blank"

    done = subprocess.run(base + ["--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert 'id="metrics-table"' in dom, done.stderr[-2000:]
    picks = report["json"]["samples"]
    for pick in picks:
        assert f'id="sample-{pick["index"]}"' in dom
        for key in ("original", "decoded"):
            if pick["audio"][key]:
                assert f'<audio controls="" preload="metadata" src="{pick["audio"][key]}">' in dom
        if pick["spectrogram"]:
            assert f'src="{pick["spectrogram"]}"' in dom
    assert dom.count("<audio") == sum(bool(s["audio"][k]) for s in picks for k in ("original", "decoded")) >= 9
    assert dom.count("<img") >= 4 + sum(bool(s["spectrogram"]) for s in picks)
    assert 'class="flags"' in dom and "out_of_vocab" in dom and PLANTED["unknown"] in dom
    for relative in (s["audio"][k] for s in picks for k in ("original", "decoded") if s["audio"][k]):
        assert (report["dir"] / relative).is_file()  # relative media resolve beside index.html


def test_picks_are_seeded_and_spread_across_shards_and_labels():
    groups = {f"s{s}": {} for s in range(4)}
    for s in range(4):
        for r in range(9):
            groups[f"s{s}"].setdefault(["Speech", "Music", "Dog"][r % 3] if s < 3 else "Speech", []).append(r)
    picks = choose_picks(groups, 8, seed=1)
    assert picks == choose_picks(groups, 8, seed=1) and picks != choose_picks(groups, 8, seed=2)
    assert len({(p["shard"], p["row"]) for p in picks}) == 8
    assert all(sum(p["shard"] == s for p in picks) == 2 for s in ("s0", "s1", "s2", "s3"))
    assert {p["label"] for p in picks} == {"Speech", "Music", "Dog"}
    assert len(choose_picks(groups, 100, seed=0)) == 36


def test_expected_frames_follow_the_pipeline_trim():
    assert row_token_count(1.0, 0, 1, 100) == 57  # official 0.16 s rounding, not round(1.0 * 50)
    assert row_token_count(20.48, 0, 2, 100) == 1024  # an inner chunk keeps its whole windows
    assert row_token_count(1.0, 0, 1, 25) == 15 and row_token_count(0.0, 0, 1, 100) == 0


def test_metrics_are_zero_for_identical_audio_and_grow_with_distortion():
    from pipeline.report import metrics as M

    wave = _clip(1.0, 16000, 1, 0)[:, 0]
    noisy = wave + 0.05 * np.random.default_rng(0).standard_normal(wave.size).astype(np.float32)
    assert M.log_mel_distance(wave, wave) == pytest.approx(0, abs=1e-6)
    assert M.mrstft_distance(wave, wave) == pytest.approx(0, abs=1e-6)
    assert 0 < M.log_mel_distance(wave, noisy) < M.log_mel_distance(wave, np.zeros_like(wave) + 1e-4)
    assert M.mrstft_distance(wave, noisy) > 0
    assert M.is_speech(["/m/09x0r"], None) and M.is_speech([], ["Male speech, man speaking"])
    assert not M.is_speech(["/m/04rlf"], ["Music"])


def test_corpus_and_originals_on_s3(corpus, tmp_path, monkeypatch):
    """Shards, failures and original audio on S3 (moto): stats, uri checks and fetching work there."""
    import s3fs

    from pipeline.report.originals import fetch_original
    from pipeline.report.spot_check import run_spot_check
    from tests.support.s3 import S3_ENV, MotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as endpoint:
        options = {"s3": {"endpoint_url": endpoint}}
        direct = s3fs.S3FileSystem(endpoint_url=endpoint)
        direct.mkdir("qa-bucket")
        direct.pipe_file("qa-bucket/clips/speech.wav", (corpus["folder"] / SPEECH).read_bytes())
        moved = {str(corpus["folder"] / SPEECH): "s3://qa-bucket/clips/speech.wav",
                 str(corpus["folder"] / MUSIC): "s3://qa-bucket/clips/music.flac"}  # music.flac is not uploaded
        rows = [{**row, "uri": moved.get(row["uri"], row["uri"])} for row in corpus["rows"]]
        out = OutputFolder("s3://qa-bucket/tokens", options)
        first_shard = next((corpus["tokens"] / "tokens").glob("*.parquet"))
        provenance = json.loads(pq.read_schema(first_shard).metadata[b"pipeline.provenance"])
        out.write_shard("tokens", tokens_table(rows[:3]), provenance)
        out.write_shard("tokens", tokens_table(rows[3:]), provenance)
        config = SpotCheckConfig(tokens="s3://qa-bucket/tokens", report=str(tmp_path / "report"), samples=0,
                                 s3_endpoint_url=endpoint, allow_uri_prefix=["s3://qa-bucket/clips"])
        report = run_spot_check(config, progress=False)
        rule = UriRule("s3://qa-bucket/tokens", allowed_prefixes=("s3://qa-bucket/clips",))
        wave, reason, seconds = fetch_original("s3://qa-bucket/clips/speech.wav", 0.25, 0.5, options, rule=rule)
    import jsonschema

    jsonschema.validate(report, json.loads((SCHEMA_DIR / "qa_report.v1.json").read_text()))
    assert report["token_stats"]["rows"] == 6 and report["samples"] == []
    assert report["codec"]["synthetic_weights"] is True and report["codec"]["token_rate"] == 100
    missing = sorted(r["uri"] for r in report["uris"]["rows"])
    assert missing == ["s3://qa-bucket/clips/music.flac"]
    assert report["uris"]["count"] == 2  # the music clip and the mismatch row share the missing object
    # a corpus on S3 cannot make the report look at local files: the local uri is counted, never checked
    assert report["uris"]["outside_rule_rows"] == 1
    assert reason is None and seconds == pytest.approx(1.0) and len(wave) == 8000
    assert (tmp_path / "report" / "index.html").exists()


def test_tokenize_job_runs_the_qa_stage_at_the_end(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"c{i}.wav", _clip(1.0, 16000, 1, i), 16000)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "jobs/tokenize_audioset.py", "--source", str(audio), "--output", str(out),
         "--checkpoint", "synthetic:small", "--semantic-vocab-size", "4096", "--quiet", "--ray-num-cpus", "2",
         "--qa-samples", "1", "--qa-ddim-steps", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"QA report: {out / 'qa_report' / 'index.html'}" in result.stdout + result.stderr
    report = json.loads((out / "qa_report" / "report.json").read_text())
    assert report["decode"]["samples_picked"] == 1 and report["samples"][0]["status"] == "ok"


def test_decoding_on_ray_actors_matches_in_process(corpus, report, ray_local, tmp_path):
    from pipeline.report.ray_decode import decode_with_ray
    from pipeline.report.spot_check import run_spot_check

    config = SpotCheckConfig(tokens=str(corpus["tokens"]), report=str(tmp_path / "ray_report"), samples=6,
                             ddim_steps=2, seed=3, ray=True, allow_uri_prefix=[str(corpus["folder"] / "clips")])
    on_ray = run_spot_check(config, decode_fn=decode_with_ray, progress=False)
    local = report["json"]
    assert on_ray["decode"]["in_process"] is False and local["decode"]["in_process"] is True
    assert [s["id"] for s in on_ray["samples"]] == [s["id"] for s in local["samples"]]
    for a, b in zip(on_ray["samples"], local["samples"], strict=True):
        assert a["status"] == b["status"], (a["id"], a["error"], b["error"])
        if b["metrics"]:
            for name in ("log_mel_distance", "mrstft_distance"):
                assert math.isclose(a["metrics"][name], b["metrics"][name], rel_tol=1e-4, abs_tol=1e-5)
