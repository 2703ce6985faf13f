"""Text from a corpus in the QA report: never interpreted by a renderer, never a credential, and
one sample's bad data never loses the report."""

from __future__ import annotations

import json

import soundfile as sf

from pipeline.codecs.semanticodec.variants import SAMPLE_RATE_HZ
from pipeline.output.folder import OutputFolder, tokens_table
from pipeline.output.schema import SCHEMA_DIR
from pipeline.report import plots
from pipeline.report.config import SpotCheckConfig
from pipeline.report.spot_check import run_spot_check
from tests.report.test_spot_check_units import PROVENANCE, FakeDecoder, _row, _tone

MATHTEXT_NAME = "a $x^$ b.wav"
PRESIGNED = ("http://127.0.0.1:9/bucket/c.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAQAREPORT"
             "%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=5ec2e75ec2e7")


def corpus_of(tmp_path, names: list[str], uris: dict[str, str] | None = None) -> str:
    rows = []
    for i, name in enumerate(names):
        path = tmp_path / "clips" / name
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _tone(1.0, 200 + 50 * i), SAMPLE_RATE_HZ, format="WAV")
        rows.append(_row(name, (uris or {}).get(name, str(path)), 1.0, i))
    OutputFolder(str(tmp_path / "out")).write_shard("tokens", tokens_table(rows), PROVENANCE)
    return str(tmp_path / "out")


def spot_check(tokens: str, report_dir, samples: int) -> dict:
    import jsonschema

    report = run_spot_check(SpotCheckConfig(tokens=tokens, report=str(report_dir), samples=samples),
                            decode_fn=FakeDecoder(), progress=False)
    jsonschema.validate(report, json.loads((SCHEMA_DIR / "qa_report.v1.json").read_text()))
    assert (report_dir / "index.html").is_file()
    return report


def test_a_file_named_like_mathtext_is_drawn_as_text(tmp_path):
    """`a $x^$ b.wav` in a spectrogram's title used to raise matplotlib's mathtext ValueError: exit 1,
    no index.html. Its figure is drawn, and the name is in the report as it is."""
    report = spot_check(corpus_of(tmp_path, [MATHTEXT_NAME, "plain.wav"]), tmp_path / "report", samples=2)
    [entry] = [s for s in report["samples"] if s["id"] == MATHTEXT_NAME]
    assert entry["spectrogram"] and (tmp_path / "report" / entry["spectrogram"]).stat().st_size > 5000
    assert not [note for note in entry["notes"] if "not written" in note]
    assert MATHTEXT_NAME in (tmp_path / "report" / "index.html").read_text()


def test_a_figure_that_cannot_be_drawn_is_a_note_and_the_report_is_written(tmp_path, monkeypatch):
    draw = plots.spectrogram_pair

    def fails_for_one(original, decoded, path, title, **kwargs):
        if title.startswith("bad.wav"):
            raise ValueError("this sample's figure cannot be drawn")
        return draw(original, decoded, path, title, **kwargs)

    monkeypatch.setattr(plots, "spectrogram_pair", fails_for_one)
    report = spot_check(corpus_of(tmp_path, ["bad.wav", "good.wav"]), tmp_path / "report", samples=2)
    entries = {s["id"]: s for s in report["samples"]}
    assert entries["bad.wav"]["spectrogram"] is None
    assert "spectrogram not written: ValueError: this sample's figure cannot be drawn" in entries["bad.wav"]["notes"]
    assert entries["good.wav"]["spectrogram"] and entries["bad.wav"]["audio"]["decoded"]


def test_a_presigned_uri_in_the_corpus_never_reaches_the_report(tmp_path):
    """An older corpus (or another tool's) holds a presigned URL: the report names the object, not
    its signature or credential, in report.json and index.html."""
    tokens = corpus_of(tmp_path, ["c.wav", "d.wav"], uris={"c.wav": PRESIGNED})
    report = spot_check(tokens, tmp_path / "report", samples=2)
    written = (tmp_path / "report" / "report.json").read_text() + (tmp_path / "report" / "index.html").read_text()
    for secret in ("5ec2e75ec2e7", "AKIAQAREPORT"):
        assert secret not in written and secret not in json.dumps(report)
    assert "http://127.0.0.1:9/bucket/c.wav?X-Amz-Algorithm=REDACTED" in written
