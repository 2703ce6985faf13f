"""The 12 published SemantiCodec variants: a frozen description of each and its published file paths
(the one place that knows them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

TokenRate = Literal[100, 50, 25]
SemanticVocabSize = Literal[4096, 8192, 16384, 32768]
Dtype = Literal["float32", "bfloat16"]  # the encoder's numerics (`precision.py`): any variant runs in either
TOKEN_RATES: tuple[int, ...] = get_args(TokenRate)
SEMANTIC_VOCAB_SIZES: tuple[int, ...] = get_args(SemanticVocabSize)
ACOUSTIC_VOCAB_SIZE = 8192

SAMPLE_RATE_HZ = 16000
SEGMENT_SAMPLES = 163_840  # one 10.24 s encoder window at 16 kHz
SEGMENT_FRAMES = 1024  # fbank rows (10 ms hop) per window
MEL_BINS = 128
AUDIOMAE_GRID = (64, 8)  # (time, frequency) 16x16 patches of a 1024x128 window
BASE_TOKENS_PER_SEGMENT = AUDIOMAE_GRID[0] * AUDIOMAE_GRID[1]  # 512 at rate 100

REPO_LAYOUT = "repo"
SINGLE_RATE_LAYOUT = "single-rate"
LAYOUTS = (REPO_LAYOUT, SINGLE_RATE_LAYOUT)  # the order in which a checkpoint location is tried

# LSTM depth of the acoustic branch, fixed per rate by the official configs.
_LSTM_LAYERS = {100: 4, 50: 3, 25: 2}


@dataclass(frozen=True, slots=True)
class SemantiCodecVariant:
    """One (token rate, semantic vocabulary) pair and where its files live in the official layout."""

    token_rate: int = 100
    semantic_vocab_size: int = 16384

    def __post_init__(self) -> None:
        if self.token_rate not in TOKEN_RATES:
            raise ValueError(f"token_rate must be one of {TOKEN_RATES}, got {self.token_rate!r}")
        if self.semantic_vocab_size not in SEMANTIC_VOCAB_SIZES:
            raise ValueError(
                f"semantic_vocab_size must be one of {SEMANTIC_VOCAB_SIZES}, "
                f"got {self.semantic_vocab_size!r}"
            )

    @property
    def name(self) -> str:
        return f"semanticodec-r{self.token_rate}-v{self.semantic_vocab_size}"

    @property
    def stack_factor(self) -> float:
        """K = 100 / rate, kept a Python float because the official length arithmetic uses it so."""
        return 100 / self.token_rate

    @property
    def patches_per_token(self) -> int:
        return int(self.stack_factor)

    @property
    def tokens_per_segment(self) -> int:
        return BASE_TOKENS_PER_SEGMENT // self.patches_per_token

    @property
    def lstm_layers(self) -> int:
        return _LSTM_LAYERS[self.token_rate]

    @property
    def frames_per_second(self) -> float:
        """Token pairs per second of audio (half the token rate: each pair is two tokens)."""
        return self.token_rate / 2

    @property
    def bitrate_bps(self) -> float:
        import math

        return self.frames_per_second * (
            math.log2(self.semantic_vocab_size) + math.log2(ACOUSTIC_VOCAB_SIZE)
        )

    # --- published file layout (Hugging Face repo haoheliu/SemantiCodec: encoder.ckpt and decoder.ckpt per
    # rate folder, the k-means codebooks under codebook_idx/ at the repo root) ---
    @property
    def folder(self) -> str:
        """This rate's folder at the repo root (encoder.ckpt, decoder.ckpt)."""
        return f"semanticodec_tokenrate_{self.token_rate}"

    @property
    def kmeans_folder(self) -> str:
        return f"combine_{self.tokens_per_segment}_audioset_dominate"

    @property
    def encoder_file(self) -> str:
        return self.files(REPO_LAYOUT)["encoder"]

    @property
    def decoder_file(self) -> str:
        return self.files(REPO_LAYOUT, decoder=True)["decoder"]

    @property
    def codebook_file(self) -> str:
        # At the root of both layouts; the number in the name is half the vocabulary size.
        return f"codebook_idx/{self.kmeans_folder}/codebook_{self.semantic_vocab_size // 2}_0.npy"

    def files(self, layout: str = REPO_LAYOUT, *, decoder: bool = False) -> dict[str, str]:
        """Role (`encoder`, `semantic_codebook`, `decoder`) → path relative to the checkpoint location.

        `repo`: a snapshot of the hub repo (rate folders + `codebook_idx/` at the root).
        `single-rate`: one rate's folder as the official `checkpoint_path=` takes it, with its
        own `codebook_idx/` inside."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        prefix = f"{self.folder}/" if layout == REPO_LAYOUT else ""
        paths = {"encoder": f"{prefix}encoder.ckpt", "semantic_codebook": self.codebook_file}
        if decoder:
            paths["decoder"] = f"{prefix}decoder.ckpt"
        return paths


ALL_VARIANTS = tuple(
    SemantiCodecVariant(rate, vocab) for rate in TOKEN_RATES for vocab in SEMANTIC_VOCAB_SIZES
)
