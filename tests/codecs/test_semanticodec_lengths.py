"""Length bookkeeping against worked examples of the official rules (Python-float rounding included)."""

import pytest

from pipeline.codecs.semanticodec.lengths import kept_token_count, segment_count
from pipeline.codecs.semanticodec.variants import ALL_VARIANTS, SemantiCodecVariant


@pytest.mark.parametrize(
    "samples, r100, r50, r25, segments",
    [
        (16000, 57, 29, 15, 1),
        (32000, 104, 52, 26, 1),
        (80000, 256, 128, 64, 1),
        (160000, 504, 252, 126, 1),
        (163840, 520, 260, 130, 2),
        (2560, 16, 8, 4, 1),
        (7680, 24, 12, 6, 1),
        (12800, 48, 24, 12, 1),
        (400000, 1256, 628, 314, 3),
        (192000, 600, 300, 150, 2),  # golden clip b: 12.0 % 0.16 rounds below 0.16
    ],
)
def test_spec_worked_examples(samples, r100, r50, r25, segments):
    assert [kept_token_count(samples, k) for k in (1.0, 2.0, 4.0)] == [r100, r50, r25]
    assert segment_count(samples) == segments


def test_variants_layout_and_bitrates():
    assert len(ALL_VARIANTS) == 12
    v = SemantiCodecVariant(50, 8192)
    assert v.encoder_file == "semanticodec_tokenrate_50/encoder.ckpt"
    assert v.codebook_file == (
        "codebook_idx/combine_256_audioset_dominate/codebook_4096_0.npy"  # at the repo root
    )
    assert (v.tokens_per_segment, v.lstm_layers, v.bitrate_bps) == (256, 3, 650.0)
    assert SemantiCodecVariant(25, 4096).bitrate_bps == 312.5
    assert SemantiCodecVariant(100, 32768).bitrate_bps == 1400.0
