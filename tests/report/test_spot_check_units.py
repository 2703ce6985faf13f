"""The spot check's steps called directly (no Ray, no job process): plan, evaluate, flags, render,
an injected decode function, the user's mistakes as one-line errors, and progress inside a decode.

The corpus here is written by hand (random in-vocabulary tokens, provenance of the small synthetic
rate-100 variant): only the test of progress inside a real decode loads a codec.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import soundfile as sf

from pipeline.codecs.semanticodec.lengths import row_token_count
from pipeline.codecs.semanticodec.variants import ACOUSTIC_VOCAB_SIZE, SAMPLE_RATE_HZ
from pipeline.errors import ConfigError, OutputError, SourceError, UserError
from pipeline.output.folder import OutputFolder, tokens_table
from pipeline.output.identity import codec_identity
from pipeline.output.schema import SCHEMA_DIR
from pipeline.report.config import SpotCheckConfig
from pipeline.report.decode import DecodeOutcome, DecodeRequest, DecodeResult, DecoderSpec, decode_in_process
from pipeline.report.evaluate import aggregate, evaluate_pick
from pipeline.report.flags import build_flags, report_exit_code
from pipeline.report.inventory import take_inventory
from pipeline.report.plan import decode_tokens_of, plan_rows
from pipeline.report.progress import PickProgress
from pipeline.report.render import json_safe, write_pick_media
from pipeline.report.spot_check import run_spot_check

RATE, VOCAB = 100, 4096
PROVENANCE = {"codec": "semanticodec", "variant": f"semanticodec-r{RATE}-v{VOCAB}", "token_rate": RATE,
              "semantic_vocab_size": VOCAB, "acoustic_vocab_size": ACOUSTIC_VOCAB_SIZE, "checkpoint": "synthetic:small",
              "synthetic_weights": True, "files": {"encoder": {"sha256": "e" * 64},
                                                   "semantic_codebook": {"sha256": "c" * 64}}}


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _row(id_: str, uri: str, seconds: float, seed: int, labels=("/m/09x0r",), human=("Speech",)) -> dict:
    frames = row_token_count(seconds, 0, 1, RATE)
    rng = np.random.default_rng(seed)
    return {"id": id_, "uri": uri, "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0, "duration_s": seconds,
            "source_sample_rate": SAMPLE_RATE_HZ, "source_channels": 1, "num_frames": frames,
            "semantic": rng.integers(0, VOCAB, frames).astype(np.uint16),
            "acoustic": rng.integers(0, ACOUSTIC_VOCAB_SIZE, frames).astype(np.uint16),
            "labels": list(labels), "human_labels": list(human)}


@pytest.fixture
def corpus(tmp_path):
    """Two shards of three 1 s rows each; every row's original audio exists."""
    rows = []
    for i in range(6):
        path = tmp_path / "clips" / f"c{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _tone(1.0, 200 + 50 * i), SAMPLE_RATE_HZ)
        rows.append(_row(f"c{i}", str(path), 1.0, i))
    out = OutputFolder(str(tmp_path / "out"))
    out.write_shard("tokens", tokens_table(rows[:3]), PROVENANCE)
    out.write_shard("tokens", tokens_table(rows[3:]), PROVENANCE)
    return {"dir": tmp_path, "tokens": str(tmp_path / "out"), "rows": rows}


class FakeDecoder:
    """An injected decode function: the original tone back (slightly changed), or a planted error."""

    def __init__(self, fail_index: int | None = None) -> None:
        self.calls: list[tuple[DecoderSpec, list[int]]] = []
        self.fail_index = fail_index

    def __call__(self, spec, requests, progress=None):
        self.calls.append((spec, [r.index for r in requests]))
        results = {}
        for request in requests:
            if progress is not None:
                for step in range(1, 4):
                    progress.step(request.index, step, 3)
            seconds = len(request.tokens) / (RATE / 2)
            if request.index == self.fail_index:
                results[request.index] = DecodeResult(None, "bad_tokens", "planted", 0.01)
            else:
                results[request.index] = DecodeResult(0.9 * _tone(seconds, 300), "ok", None, 0.01)
            if progress is not None:
                progress.pick_done(request.index)
        return DecodeOutcome(results, in_process=False)


# --- the user's mistakes: one line, a UserError ---------------------------------------------------

def test_nonexistent_tokens_folder_is_a_one_line_source_error(tmp_path):
    config = SpotCheckConfig(tokens=str(tmp_path / "nonexistent"), report=str(tmp_path / "report"))
    with pytest.raises(SourceError) as caught:
        run_spot_check(config, decode_fn=FakeDecoder(), progress=False)
    message = str(caught.value)
    assert "does not exist" in message and str(tmp_path / "nonexistent") in message and "\n" not in message


def test_spot_check_job_with_a_nonexistent_tokens_folder_exits_1_with_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    job = Path(__file__).resolve().parents[2] / "jobs" / "spot_check.py"
    done = subprocess.run([sys.executable, str(job), "--tokens", str(tmp_path / "nonexistent"), "--report",
                           str(tmp_path / "report")], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "report").exists()


def test_folder_without_token_shards_is_a_source_error(tmp_path):
    (tmp_path / "empty" / "tokens").mkdir(parents=True)
    config = SpotCheckConfig(tokens=str(tmp_path / "empty"), report=str(tmp_path / "report"))
    with pytest.raises(SourceError, match="no token shards") as caught:
        run_spot_check(config, decode_fn=FakeDecoder(), progress=False)
    assert "\n" not in str(caught.value)
    tokens_file = tmp_path / "a_file"
    tokens_file.write_text("x")
    with pytest.raises(SourceError, match="is a file"):
        take_inventory(str(tokens_file), None)


def test_report_path_that_is_a_file_is_an_output_error(corpus):
    report_file = corpus["dir"] / "report.txt"
    report_file.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        run_spot_check(SpotCheckConfig(tokens=corpus["tokens"], report=str(report_file)), decode_fn=FakeDecoder())


def test_ray_without_a_ray_decode_function_is_a_config_error(corpus):
    config = SpotCheckConfig(tokens=corpus["tokens"], report=str(corpus["dir"] / "r"), ray=True)
    with pytest.raises(ConfigError, match="decode_with_ray"):
        run_spot_check(config)
    assert issubclass(ConfigError, UserError)


# --- the injected decode function ---------------------------------------------------------------------

def test_injected_decode_function_decodes_every_picked_row(corpus):
    import jsonschema

    fake = FakeDecoder(fail_index=1)
    report_dir = corpus["dir"] / "report"
    config = SpotCheckConfig(tokens=corpus["tokens"], report=str(report_dir), samples=4, ddim_steps=7, seed=5,
                             cfg_scale=1.5, max_decode_s=0.5, allow_uri_prefix=[str(corpus["dir"] / "clips")])
    report = run_spot_check(config, decode_fn=fake, progress=False)
    jsonschema.validate(report, json.loads((SCHEMA_DIR / "qa_report.v1.json").read_text()))
    assert json.loads((report_dir / "report.json").read_text()) == report and (report_dir / "index.html").is_file()

    (spec, indexes), = fake.calls  # one call, with every request
    assert indexes == [0, 1, 2, 3]
    assert (spec.checkpoint, spec.token_rate, spec.semantic_vocab_size) == ("synthetic:small", RATE, VOCAB)
    assert (spec.ddim_steps, spec.cfg_scale, spec.device) == (7, 1.5, "cpu")
    assert report["decode"]["in_process"] is False and report["decode"]["samples_picked"] == 4
    picks = report["samples"]
    assert [s["status"] for s in picks] == ["ok", "bad_tokens", "ok", "ok"]
    assert all(s["decoded_frames"] == 25 and "--max-decode-s" in s["notes"][-1] for s in picks)
    for pick in (picks[0], picks[2], picks[3]):
        assert pick["metrics"]["log_mel_distance"] > 0 and pick["metrics"]["compared_s"] == pytest.approx(0.5)
        assert sf.info(report_dir / pick["audio"]["decoded"]).duration == pytest.approx(0.5)
    flags = {f["kind"]: f for f in report["flags"]}
    assert flags["decode_errors"]["count"] == 1 and "planted" in flags["decode_errors"]["message"]
    assert report_exit_code(report) == 1


def test_the_default_decode_reports_an_unloadable_codec_and_keeps_the_report(corpus):
    report = run_spot_check(SpotCheckConfig(tokens=corpus["tokens"], report=str(corpus["dir"] / "r"), samples=2,
                                            checkpoint=str(corpus["dir"] / "no_weights_here")), progress=False)
    assert report["decode"]["in_process"] is True
    assert [s["status"] for s in report["samples"]] == ["not_decoded", "not_decoded"]
    flags = {f["kind"]: f for f in report["flags"]}
    assert "codec_unavailable" in flags and report_exit_code(report) == 1
    assert report["token_stats"]["rows"] == 6


# --- plan, evaluate, flags, render -----------------------------------------------------------------

def test_plan_cuts_rows_to_max_decode_s_and_seeds_each_sample():
    rows = [_row("a", "/x/a.wav", 1.0, 0), _row("b", "/x/b.wav", 0.1, 1)]
    planned = plan_rows(rows, RATE / 2, 0.5, seed=10)
    assert [p.request.seed for p in planned] == [10, 11] and [p.request.index for p in planned] == [0, 1]
    assert planned[0].request.tokens.shape == (25, 2) and planned[0].truncated and planned[0].usable == 57
    assert planned[0].seconds == 0.5 and planned[1].seconds == 0.1
    assert not planned[1].truncated and len(planned[1].request.tokens) == row_token_count(0.1, 0, 1, RATE)
    np.testing.assert_array_equal(planned[0].request.tokens[:, 1], rows[0]["acoustic"][:25])
    tokens, usable = decode_tokens_of({"semantic": [1, 2, 3], "acoustic": [4, 5]}, 50, None)
    assert usable == 2 and tokens.tolist() == [[1, 4], [2, 5]]


def _planned(row, **kw):
    return plan_rows([{**row, "shard": "part-0.parquet", "row": 0}], RATE / 2, kw.get("max_decode_s"), 0)[0]


def test_evaluate_scores_a_decode_against_its_original():
    row = _row("a", "/x/a.wav", 1.0, 0)
    original = _tone(1.0)
    same = evaluate_pick(_planned(row), DecodeResult(original.copy(), "ok", None, 2.0), (original, None, 1.0),
                         unknown_uris={})
    other = evaluate_pick(_planned(row), DecodeResult(_tone(1.0, 900), "ok", None, 2.0), (original, None, 1.0),
                          unknown_uris={})
    assert same.entry["status"] == other.entry["status"] == "ok" and same.entry["decode_s"] == 2.0
    assert same.entry["metrics"]["log_mel_distance"] == pytest.approx(0, abs=1e-6)
    assert other.entry["metrics"]["log_mel_distance"] > 0.5
    assert same.entry["audio"] == {"original": "audio/000_original.wav", "decoded": "audio/000_decoded.wav"}
    assert same.entry["speech"] is True and same.entry["spectrogram"] == "img/000_logmel.png"

    loud = evaluate_pick(_planned(row), DecodeResult(4 * original, "ok", None, 1.0), (None, "gone", None),
                         unknown_uris={"/x/a.wav": "missing"})
    assert loud.entry["status"] == "original_unavailable" and loud.entry["metrics"] is None
    assert any("clipped" in n for n in loud.entry["notes"]) and "unknown uri (missing)" in loud.entry["notes"]

    nan = evaluate_pick(_planned(row), DecodeResult(np.full(16000, np.nan, np.float32), "ok", None, 1.0),
                        (original, None, 1.0), unknown_uris={})
    assert nan.entry["status"] == "decode_failed" and nan.decoded is None and nan.entry["audio"]["decoded"] is None
    missing = evaluate_pick(_planned(row), None, (original, None, 1.0), unknown_uris={},
                            codec_error="no decoder.ckpt")
    assert missing.entry["status"] == "not_decoded" and "no decoder.ckpt" in missing.entry["error"]
    empty = evaluate_pick(_planned({**row, "semantic": [], "acoustic": []}), None, (original, None, 1.0),
                          unknown_uris={})
    assert empty.entry["status"] == "no_tokens"

    summary = aggregate([same.entry, other.entry, loud.entry, nan.entry])
    assert summary["by_status"] == {"ok": 2, "original_unavailable": 1, "decode_failed": 1}
    assert summary["with_metrics"] == 2 and summary["decoded"] == 3 and summary["decode_seconds_total"] == 6.0
    assert summary["by_label"]["Speech"]["count"] == 2


def _stats(**overrides) -> dict:
    empty = {"count": 0, "rows": []}
    stats = {"degenerate_rows": empty, "length_mismatches": empty, "out_of_vocab_rows": {**empty, "tokens": {}},
             "tokens_per_second": {"ratio_to_trim_aware_expected": 1.0}}
    return {**stats, **overrides}


def test_flags_and_the_exit_code_follow_severity():
    settings = {"synthetic_weights": True, "settings_source": "parquet metadata", "token_rate": RATE,
                "semantic_vocab_size": VOCAB, "frame_rate": RATE / 2}
    uris = {"count": 0, "rows": [], "unchecked_rows": 3}
    failures = {"count": 0, "by_type": {}}
    clean = build_flags(settings, _stats(), uris, failures, [], mixed=[], codec_error=None, unreadable=[])
    assert [(f["kind"], f["severity"]) for f in clean] == [("synthetic_weights", "warning"), ("uris_unchecked", "info")]
    assert report_exit_code({"flags": clean}) == 0
    drifted = build_flags(settings, _stats(tokens_per_second={"ratio_to_trim_aware_expected": 1.1}), uris,
                          failures, [], mixed=[{"shard": "part-1.parquet"}], codec_error=None, unreadable=[])
    assert [f["kind"] for f in drifted] == ["mixed_provenance", "synthetic_weights", "tokens_per_second",
                                            "uris_unchecked"]
    assert report_exit_code({"flags": drifted}) == 1


def test_mixed_corpus_means_another_codec_identity(tmp_path):
    """The report's "mixed" is `codec_identity`, the corpus reader's and the resume check's rule: another
    encoder file is mixed, another decoder file or checkpoint location is not."""
    rows = [_row(f"r{i}", f"/x/{i}.wav", 1.0, i) for i in range(4)]
    out = OutputFolder(str(tmp_path / "out"))
    same_weights_elsewhere = {**PROVENANCE, "checkpoint": "s3://mirror/semanticodec",
                              "files": {**PROVENANCE["files"], "decoder": {"sha256": "d" * 64}}}
    other_encoder = {**PROVENANCE, "files": {**PROVENANCE["files"], "encoder": {"sha256": "f" * 64}}}
    for i, provenance in enumerate((PROVENANCE, same_weights_elsewhere, other_encoder)):
        out.write_shard("tokens", tokens_table(rows[i:i + 1]), provenance)
    inventory = take_inventory(str(tmp_path / "out"), None)
    assert len(inventory.shards) == 3 and len(inventory.mixed) == 1
    assert inventory.mixed[0]["identity"] == codec_identity(other_encoder)


def test_render_writes_the_files_an_entry_names(tmp_path):
    row = _row("a", "/x/a.wav", 1.0, 0)
    original = _tone(1.0)
    evaluation = evaluate_pick(_planned(row), DecodeResult(_tone(1.0, 500), "ok", None, 1.0), (original, None, 1.0),
                               unknown_uris={})
    write_pick_media(evaluation, tmp_path)
    for key in ("original", "decoded"):
        wave, rate = sf.read(tmp_path / evaluation.entry["audio"][key])
        assert rate == SAMPLE_RATE_HZ and len(wave) == SAMPLE_RATE_HZ
    assert (tmp_path / evaluation.entry["spectrogram"]).stat().st_size > 5000
    assert json_safe({"a": np.float32(1.5), "b": [math.nan, (1, np.int64(2))]}) == {"a": 1.5, "b": [None, [1, 2]]}


# --- progress ---------------------------------------------------------------------------------------

def test_progress_bars_show_rows_and_steps_inside_a_row():
    stream = io.StringIO()
    with PickProgress(2, file=stream) as bar:
        for index in (0, 1):
            for step in range(1, 5):
                bar.step(index, step, 4)
            bar.pick_done(index)
    text = stream.getvalue()
    assert "row 1 decode" in text and "row 2 decode" in text and "4/4" in text and "2/2" in text


def test_the_in_process_decode_reports_every_ddim_step(small_decoder_checkpoint):
    """Progress from inside the codec's DDIM loop (issue 13: ~46 s per row were silent)."""
    spec = DecoderSpec(small_decoder_checkpoint, RATE, VOCAB, ddim_steps=3, cfg_scale=2.0)
    rng = np.random.default_rng(0)
    tokens = np.stack([rng.integers(0, VOCAB, 30), rng.integers(0, ACOUSTIC_VOCAB_SIZE, 30)], 1)
    bad = tokens.copy()
    bad[0, 1] = ACOUSTIC_VOCAB_SIZE

    class Recorder:
        def __init__(self):
            self.steps, self.done = [], []

        def step(self, index, done, total):
            self.steps.append((index, done, total))

        def pick_done(self, index):
            self.done.append(index)

    recorder = Recorder()
    outcome = decode_in_process(spec, [DecodeRequest(0, tokens, 1), DecodeRequest(1, bad, 2)], recorder)
    assert outcome.codec_error is None and outcome.synthetic_weights is True
    assert outcome.results[0].status == "ok" and outcome.results[1].status == "bad_tokens"
    # one window: the start, 3 DDIM steps, then the VAE + vocoder pass
    assert recorder.steps == [(0, 0, 4), (0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4)] and recorder.done == [0, 1]
    assert len(outcome.results[0].waveform) > 0


@pytest.fixture(scope="module")
def small_decoder_checkpoint():
    from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location

    return resolve_checkpoint_location("synthetic:small", RATE, VOCAB, with_decoder=True)
