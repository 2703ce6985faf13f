"""Audio decode (bytes → mono 16 kHz chunks): the official rule, chunking, streamed long files in
bounded memory, MP3's estimated lengths, segments past the end and float audio out of range."""

from __future__ import annotations

import io
import logging
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from pipeline.audio.load import load_chunks
from pipeline.codecs.semanticodec.variants import SAMPLE_RATE_HZ, SEGMENT_SAMPLES
from pipeline.records import AudioChunk, Failure, SourceItem

LONG = 1e9


def encode(wave: np.ndarray, rate: int, fmt="WAV", subtype=None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def signal(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    return wave.astype(np.float32)


def decode(data: bytes, chunk_windows=30, max_duration_s=LONG, **fields) -> list:
    return list(load_chunks(SourceItem(id="x", uri="/x", data=data, **fields), chunk_windows=chunk_windows,
                            max_duration_s=max_duration_s))


def test_channel0_resampled_with_the_official_resampler():
    wave = signal(3.0, 44100, channels=2)
    [chunk] = decode(encode(wave, 44100, "FLAC", "PCM_24"))
    with sf.SoundFile(io.BytesIO(encode(wave, 44100, "FLAC", "PCM_24"))) as handle:
        ch0 = handle.read(dtype="float32", always_2d=True)[:, 0]
    expected = AF.resample(torch.from_numpy(ch0)[None], 44100, SAMPLE_RATE_HZ)[0].numpy()
    np.testing.assert_array_equal(chunk.waveform, expected)
    assert (chunk.info.source_sample_rate, chunk.info.source_channels, chunk.info.num_chunks) == (44100, 2, 1)
    assert chunk.info.duration_s == pytest.approx(3.0, abs=1e-4)


def test_long_input_is_streamed_in_chunks_equal_to_the_whole_file_path():
    wave = signal(25.0, 48000)
    data = encode(wave, 48000, "FLAC")
    [whole] = decode(data, chunk_windows=30)  # one chunk: the exact whole-file path
    streamed = decode(data, chunk_windows=1)  # 10.24 s chunks: streamed
    assert all(isinstance(c, AudioChunk) for c in streamed)
    assert [c.info.chunk_index for c in streamed] == [0, 1, 2] and {c.info.num_chunks for c in streamed} == {3}
    assert [c.info.chunk_start_s for c in streamed] == [0.0, 10.24, 20.48]
    assert [len(c.waveform) for c in streamed[:2]] == [SEGMENT_SAMPLES] * 2
    joined = np.concatenate([c.waveform for c in streamed])
    assert joined.shape == whole.waveform.shape
    assert float(np.abs(joined - whole.waveform).max()) <= 1e-6


@pytest.mark.parametrize("chunk_windows", [30, 1])
def test_truncated_flac_fails_in_both_paths(chunk_windows):
    data = encode(signal(25.0, 16000), 16000, "FLAC")
    out = decode(data[: len(data) * 2 // 3], chunk_windows=chunk_windows)
    assert isinstance(out[-1], Failure) and out[-1].stage == "decode" and not out[-1].retryable
    assert "truncated" in out[-1].message or "cannot decode" in out[-1].message


def test_failures_pass_through_and_bad_bytes_fail():
    failure = Failure("x", "/x", "read", "ConnectionResetError", "reset", retryable=True)
    assert list(load_chunks(SourceItem("x", "/x", failure=failure), chunk_windows=30, max_duration_s=LONG)) == [failure]
    [empty] = decode(b"")
    assert (empty.error_type, empty.message) == ("AudioDecodeError", "empty file (0 bytes)")
    [junk] = decode(b"not audio at all" * 100)
    assert junk.error_type == "AudioDecodeError" and junk.stage == "decode"
    [too_long] = decode(encode(signal(3.0, 16000), 16000), max_duration_s=2.0)
    assert "over the 2 s limit" in too_long.message


# --- MP3: lengths are estimates -----------------------------------------------------------------

def mp3_with_overstated_length(rate: int, seconds: float, extra_frames: int = 3) -> tuple[bytes, int]:
    """A real MP3 (libsndfile/LAME) whose Xing header claims `extra_frames` more MPEG frames than
    the stream holds, as MP3s from some encoders do: libsndfile's frame count is then an estimate
    that decoding does not reach. Returns (bytes, frames the header claims)."""
    data = bytearray(encode(signal(seconds, rate), rate, "MP3"))
    at = data.find(b"Xing")
    assert at > 0 and struct.unpack(">I", data[at + 4:at + 8])[0] & 1, "no Xing frame count to edit"
    count = struct.unpack(">I", data[at + 8:at + 12])[0]
    data[at + 8:at + 12] = struct.pack(">I", count + extra_frames)
    with sf.SoundFile(io.BytesIO(bytes(data))) as handle:
        claimed, decoded = handle.frames, len(handle.read(dtype="float32"))
    assert claimed > decoded, (claimed, decoded)
    return bytes(data), claimed


@pytest.mark.parametrize("rate", [22050, 44100])
def test_mp3_decodes_at_its_true_length(rate):
    [chunk] = decode(encode(signal(3.3, rate), rate, "MP3"))
    assert chunk.info.duration_s == pytest.approx(3.3, abs=0.1) and chunk.info.meta is None


@pytest.mark.parametrize("rate", [22050, 44100])
def test_mp3_whose_header_overstates_its_length_is_kept_with_a_warning(rate, caplog):
    data, claimed = mp3_with_overstated_length(rate, 3.3)
    with caplog.at_level(logging.WARNING, logger="pipeline.audio.load"):
        [chunk] = decode(data)
    assert isinstance(chunk, AudioChunk)
    assert f"header says {claimed} frames" in chunk.info.meta["warning"] and "decoded samples kept" in caplog.text


def test_long_mp3_is_counted_then_streamed_with_the_right_chunk_count():
    data, _ = mp3_with_overstated_length(22050, 22.0)
    chunks = decode(data, chunk_windows=1)
    assert all(isinstance(c, AudioChunk) for c in chunks), chunks[-1]
    assert [c.info.chunk_index for c in chunks] == [0, 1, 2] and {c.info.num_chunks for c in chunks} == {3}
    with sf.SoundFile(io.BytesIO(data)) as handle:
        true = len(handle.read(dtype="float32"))
    assert sum(len(c.waveform) for c in chunks) == int(np.ceil(true * 160 / 220.5))


# --- segments -------------------------------------------------------------------------------------

def test_segment_end_past_the_file_end_is_a_failure_not_a_short_row():
    data = encode(signal(12.3, 16000), 16000)
    [failure] = decode(data, start_s=10.0, end_s=20.0)
    assert isinstance(failure, Failure) and failure.message == "segment 10-20 s requested, file is 12.3 s"
    [within] = decode(data, start_s=10.0, end_s=12.6)  # 0.3 s past the end: within the 0.5 s tolerance
    assert within.info.duration_s == pytest.approx(2.3)
    [inside] = decode(data, start_s=1.0, end_s=3.5)
    assert inside.info.duration_s == pytest.approx(2.5)
    [late] = decode(data, start_s=13.0)
    assert isinstance(late, Failure) and "file is 12.3 s" in late.message


# --- float audio out of range --------------------------------------------------------------------

def test_float_wav_out_of_range_is_tokenized_with_a_warning(caplog):
    wave = signal(1.0, 16000)
    wave[100] = 3.7e5
    with caplog.at_level(logging.WARNING, logger="pipeline.audio.load"):
        [chunk] = decode(encode(wave, 16000, "WAV", "FLOAT"), meta={"text": "hi"})
    assert isinstance(chunk, AudioChunk) and chunk.waveform.max() == pytest.approx(3.7e5)
    assert chunk.info.meta == {"text": "hi", "warning": "peak 3.7e+05 > 1.0: float audio not in [-1, 1]"}
    assert "float audio not in [-1, 1]" in caplog.text
    [normal] = decode(encode(signal(1.0, 16000), 16000, "WAV", "FLOAT"))
    assert normal.info.meta is None


# --- bounded memory -------------------------------------------------------------------------------

PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from pipeline.audio.load import load_chunks
    from pipeline.records import SourceItem
    data = open(sys.argv[1], "rb").read()
    warm_up = SourceItem("w", "/w", data=open(sys.argv[2], "rb").read())
    list(load_chunks(warm_up, chunk_windows=1, max_duration_s=1e9))  # imports, kernels, first allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = 0
    for chunk in load_chunks(SourceItem("x", "/x", data=data), chunk_windows=int(sys.argv[3]), max_duration_s=1e9):
        assert chunk.waveform is not None, chunk
        count += 1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(count, (after - before) * 1024)
""")


def test_decode_peak_memory_is_bounded_by_chunks_not_file_length(tmp_path):
    rate, minutes, chunk_windows = 44100, 20, 3
    path, short = tmp_path / "long.flac", tmp_path / "short.flac"
    with sf.SoundFile(path, "w", rate, 1, format="FLAC") as handle:
        for minute in range(minutes):
            handle.write(signal(60.0, rate, seed=minute))
    sf.write(short, signal(40.0, rate), rate, format="FLAC")
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), str(short), str(chunk_windows)],
                         capture_output=True, text=True, timeout=600, check=True)
    count, grown = map(int, out.stdout.split())
    decoded_bytes = minutes * 60 * rate * 4  # the float32 file the old decode held (several times over)
    chunk_bytes = chunk_windows * SEGMENT_SAMPLES * 4
    print(f"20 min 44.1 kHz FLAC: {count} chunks, peak RSS grew {grown / 2**20:.1f} MiB "
          f"(chunk {chunk_bytes / 2**20:.1f} MiB, float32 file {decoded_bytes / 2**20:.0f} MiB)")
    assert count == int(np.ceil(minutes * 60 * SAMPLE_RATE_HZ / (chunk_windows * SEGMENT_SAMPLES)))
    assert grown < 2 * chunk_bytes + 48 * 2**20
    assert grown < decoded_bytes / 4


# --- resampling left to the encoder ---------------------------------------------------------------

@pytest.mark.parametrize(("rate", "seconds", "chunk_windows", "fmt"), [
    (48000, 3.0, 30, "FLAC"),   # short: the whole-read path
    (44100, 25.0, 1, "FLAC"),   # long: streamed, 3 chunks
    (22050, 22.0, 1, "MP3"),    # estimated length: counted, then streamed
    (16000, 5.0, 30, "WAV"),    # already 16 kHz: nothing to defer
])
def test_chunks_resampled_by_the_encoder_equal_the_decode_tasks_chunks(rate, seconds, chunk_windows, fmt):
    """`resample=False` ships resampler input spans; resampled where the encoder does it
    (`encoding.resample_spans_on_device`), they give the decode path's chunks: same rows, same
    lengths, samples equal up to float rounding (max |Δ| printed)."""
    from pipeline.codecs.semanticodec.prepare import prepare_clip
    from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
    from pipeline.tokenize.encode import resample_spans_on_device

    data = encode(signal(seconds, rate, channels=2), rate, fmt)
    item = SourceItem(id="x", uri="/x", data=data)
    on_cpu = list(load_chunks(item, chunk_windows=chunk_windows, max_duration_s=LONG))
    deferred = list(load_chunks(item, chunk_windows=chunk_windows, max_duration_s=LONG, resample=False))
    assert all(isinstance(c, AudioChunk) for c in on_cpu + deferred)
    assert [c.info for c in deferred] == [c.info for c in on_cpu]
    assert {c.resample_from for c in deferred} == ({0} if rate == 16000 else {rate})

    variant = SemantiCodecVariant(100, 4096)
    codec = type("Codec", (), {"device": "cpu", "variant": variant})()
    if rate == 16000:
        deferred = [AudioChunk(c.info, prepare_clip(c.waveform, variant).samples) for c in deferred]
    resampled = resample_spans_on_device(codec, deferred)
    assert all(not c.resample_from for c in resampled)
    expected = [prepare_clip(c.waveform, variant).samples for c in on_cpu]
    assert [len(c.waveform) for c in resampled] == [len(e) for e in expected]
    delta = max(float(np.abs(c.waveform - e).max()) for c, e in zip(resampled, expected, strict=True))
    print(f"{rate} Hz {fmt}, {len(on_cpu)} chunks: resampled in the encoder vs the decode task, max |Δ| = {delta:.3g}")
    assert delta <= 1e-6


def test_deferred_resampling_still_fails_truncated_input():
    data = encode(signal(25.0, 48000), 48000, "FLAC")
    out = list(load_chunks(SourceItem(id="x", uri="/x", data=data[: len(data) * 2 // 3]), chunk_windows=1,
                           max_duration_s=LONG, resample=False))
    assert isinstance(out[-1], Failure) and out[-1].stage == "decode" and not out[-1].retryable


# --- formats libsndfile cannot read: FFmpeg (PyAV) ------------------------------------------------

def ffmpeg_channel0(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray()[0] for f in container.decode(container.streams.audio[0])]
    return np.concatenate(frames).astype(np.float32)


@pytest.mark.parametrize(("container", "codec", "rate"), [("mp4", "aac", 44100), ("webm", "libopus", 48000)])
def test_aac_m4a_and_opus_webm_decode_through_ffmpeg(container, codec, rate):
    """Valid AAC (.m4a) and Opus-in-WebM files, which libsndfile does not read, are decoded by FFmpeg:
    channel 0 at 16 kHz by the official resampler, source rate and channels recorded."""
    from tests.support.audio import ffmpeg_bytes, make_tone

    data = ffmpeg_bytes(make_tone(3.0, rate, channels=2), rate, container, codec)
    with pytest.raises(sf.LibsndfileError):
        sf.info(io.BytesIO(data))
    [chunk] = decode(data)
    assert isinstance(chunk, AudioChunk), chunk
    expected = AF.resample(torch.from_numpy(ffmpeg_channel0(data))[None], rate, SAMPLE_RATE_HZ)[0].numpy()
    np.testing.assert_array_equal(chunk.waveform, expected)
    assert (chunk.info.source_sample_rate, chunk.info.source_channels) == (rate, 2)
    assert chunk.info.duration_s == pytest.approx(3.0, abs=0.1)  # AAC adds its encoder delay


def test_long_m4a_is_streamed_in_chunks_equal_to_the_whole_file_path_and_segments_work():
    from tests.support.audio import ffmpeg_bytes, make_tone

    data = ffmpeg_bytes(make_tone(25.0, 44100), 44100)
    [whole] = decode(data, chunk_windows=30)
    streamed = decode(data, chunk_windows=1)
    assert [c.info.chunk_index for c in streamed] == [0, 1, 2] and {c.info.num_chunks for c in streamed} == {3}
    joined = np.concatenate([c.waveform for c in streamed])
    assert joined.shape == whole.waveform.shape and float(np.abs(joined - whole.waveform).max()) <= 1e-6
    [segment] = decode(data, start_s=5.0, end_s=7.5)
    expected = AF.resample(torch.from_numpy(ffmpeg_channel0(data)[5 * 44100:int(7.5 * 44100)])[None], 44100,
                           SAMPLE_RATE_HZ)[0].numpy()
    np.testing.assert_array_equal(segment.waveform, expected)
    deferred = load_chunks(SourceItem(id="x", uri="/x", data=data), chunk_windows=1, max_duration_s=LONG,
                           resample=False)
    assert [c.resample_from for c in deferred] == [44100] * 3


def test_bytes_neither_decoder_reads_fail_with_both_reasons():
    from tests.support.audio import ffmpeg_bytes, make_tone

    [junk] = decode(b"not audio at all" * 100)
    assert junk.stage == "decode" and "soundfile cannot decode it" in junk.message and "FFmpeg" in junk.message
    data = ffmpeg_bytes(make_tone(3.0, 44100), 44100)
    [cut] = decode(data[: len(data) // 2])  # an .m4a cut short: its index (moov) is at the end
    assert isinstance(cut, Failure) and cut.stage == "decode" and not cut.retryable


def test_a_file_whose_container_gives_no_length_is_counted_then_decoded(monkeypatch):
    """A stream with no duration in its container (frame estimate 0) is counted first, not assumed
    short and decoded whole: its chunks are those of the file with a known length."""
    from pipeline.audio import ffmpeg as audio_ffmpeg
    from tests.support.audio import ffmpeg_bytes, make_tone

    data = ffmpeg_bytes(make_tone(25.0, 44100), 44100)
    expected = decode(data, chunk_windows=1)
    monkeypatch.setattr(audio_ffmpeg, "_estimated_frames", lambda *args: 0)
    from pipeline.audio import load as audio_decode

    def whole(*args, **kwargs):
        raise AssertionError("a file of unknown length was decoded whole")

    monkeypatch.setattr(audio_decode, "_resample_and_cut", whole)
    got = decode(data, chunk_windows=1)
    assert [c.info for c in got] == [c.info for c in expected]
    assert all(np.array_equal(a.waveform, b.waveform) for a, b in zip(got, expected, strict=True))


# --- what a header claims never sizes the decode --------------------------------------------------

LYING_SCRIPT = textwrap.dedent("""
    import resource, sys
    from pipeline.audio import ffmpeg
    from pipeline.audio.load import load_chunks
    from pipeline.records import SourceItem
    from tests.support.audio import silent_matroska
    decoded = [0]
    channel0 = ffmpeg._channel0
    def counting(frame):
        samples = channel0(frame)
        decoded[0] += len(samples)
        return samples
    ffmpeg._channel0 = counting
    warm_up = SourceItem("w", "/w", data=silent_matroska(20.0))
    list(load_chunks(warm_up, chunk_windows=1, max_duration_s=1e9))  # imports, first allocations
    data = silent_matroska(float(sys.argv[1]), claimed_s=1.0)
    decoded[0] = 0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    records = list(load_chunks(SourceItem("x", "/x", data=data), chunk_windows=30, max_duration_s=float(sys.argv[2])))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(decoded[0], (after - before) * 1024)
    print(records[0].message if len(records) == 1 and hasattr(records[0], "message") else records)
""")


def test_a_container_that_claims_1_s_but_holds_hours_stops_decoding_at_the_limit():
    """A Matroska whose Duration says 1 s but holds 2 h (at 16 kHz: 460 MB of float32 decoded) and a
    300 s limit: decoding stops at the limit (one chunk's worth tried whole, then counted to 300 s +
    1 frame), the input fails with the limit's reason, and the process's peak RSS grows by a chunk
    or two, not the file."""
    hours, limit = 2, 300.0
    out = subprocess.run([sys.executable, "-c", LYING_SCRIPT, str(hours * 3600), str(limit)],
                         capture_output=True, text=True, timeout=600, check=True)
    counts, message = out.stdout.strip().split("\n")
    decoded, grown = map(int, counts.split())
    chunk_bytes = 30 * SEGMENT_SAMPLES * 4
    print(f"{hours} h claiming 1 s: decoded {decoded / SAMPLE_RATE_HZ:.0f} s, peak RSS grew {grown / 2**20:.1f} MiB")
    assert message.startswith(f"over the {limit:.0f} s limit: decoding stopped after {limit:.0f} s"), message
    assert "estimated 1 s" in message
    frame = 4608  # FLAC frames: decoding stops within one of the limit
    assert decoded <= (30 * SEGMENT_SAMPLES + 1 + frame) + (limit * SAMPLE_RATE_HZ + 1 + frame)
    assert grown < 2 * chunk_bytes + 48 * 2**20
    assert grown < hours * 3600 * SAMPLE_RATE_HZ * 4 / 4


def test_a_container_that_understates_its_length_is_streamed_like_an_honest_one():
    """Under the limit, a file that claims 1 s but holds 25 s gives the chunks of the same file
    with its true Duration (streamed, never decoded whole on the strength of the claim)."""
    from tests.support.audio import silent_matroska

    honest, lying = silent_matroska(25.0), silent_matroska(25.0, claimed_s=1.0)
    expected = decode(honest, chunk_windows=1)
    got = decode(lying, chunk_windows=1)
    assert len(got) == 3 and all(isinstance(c, AudioChunk) for c in got)
    assert [c.info.duration_s for c in got] == [c.info.duration_s for c in expected]
    assert "warning" in got[0].info.meta  # the estimate's miss is noted, as for MP3
    segment = decode(lying, chunk_windows=1, max_duration_s=10.0, start_s=5.0, end_s=14.0)
    assert [c.info.duration_s for c in segment] == [pytest.approx(9.0)]
    [over] = decode(lying, chunk_windows=1, max_duration_s=10.0)
    assert isinstance(over, Failure) and over.message.startswith("over the 10 s limit")


def test_a_flac_whose_header_leaves_the_length_unknown_is_counted_by_ffmpeg():
    """libsndfile reports an unknown FLAC length as 2**63 - 1 frames (and cannot read the stream):
    such a file goes to FFmpeg, which counts it, rather than failing as 'over the limit'."""
    wave = signal(25.0, 16000)
    data = bytearray(encode(wave, 16000, "FLAC"))
    fields = int.from_bytes(data[18:26], "big")
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")  # STREAMINFO total samples: 0, unknown
    with sf.SoundFile(io.BytesIO(bytes(data))) as handle:
        assert handle.frames >= 1 << 62
    got = decode(bytes(data), chunk_windows=1, max_duration_s=3600.0)
    expected = decode(encode(wave, 16000, "FLAC"), chunk_windows=1)
    assert [c.info.duration_s for c in got] == [c.info.duration_s for c in expected]
    assert all(np.array_equal(a.waveform, b.waveform) for a, b in zip(got, expected, strict=True))
