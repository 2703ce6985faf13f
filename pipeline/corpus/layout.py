"""How a clip's token pairs become one id sequence, and the resulting vocabulary.

interleaved: [s0, a0, s1, a1, ...] in one vocabulary: semantic ids 0..V_s-1, acoustic ids
             offset by V_s (V_s..V_s+8191), special tokens after that.
parallel:    two aligned streams (semantic, acoustic), each in its own vocabulary; special tokens
             after the larger of the two, the same id in both streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

LayoutName = Literal["interleaved", "parallel"]
LAYOUTS: tuple[str, ...] = get_args(LayoutName)
SPECIALS = ("bos", "eos", "sep")


@dataclass(frozen=True)
class TokenLayout:
    semantic_vocab_size: int
    acoustic_vocab_size: int = 8192
    layout: LayoutName = "interleaved"
    bos: bool = False
    eos: bool = True
    sep: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def codec_vocab_size(self) -> int:
        if self.layout == "interleaved":
            return self.semantic_vocab_size + self.acoustic_vocab_size
        return max(self.semantic_vocab_size, self.acoustic_vocab_size)

    @property
    def special_ids(self) -> dict[str, int]:
        names = [name for name in SPECIALS if getattr(self, name)]
        return {name: self.codec_vocab_size + i for i, name in enumerate(names)}

    @property
    def vocab_size(self) -> int:
        return self.codec_vocab_size + len(self.special_ids)

    @property
    def dtype(self):
        return np.uint16 if self.vocab_size <= 65536 else np.uint32

    def flatten(self, semantic: np.ndarray, acoustic: np.ndarray) -> np.ndarray:
        """One clip → ids: [T*2] (+ specials) interleaved, or [2, T] (+ specials) parallel."""
        semantic = np.asarray(semantic, np.int64)
        acoustic = np.asarray(acoustic, np.int64)
        specials = self.special_ids
        head = [specials["bos"]] if "bos" in specials else []
        tail = [specials["eos"]] if "eos" in specials else []
        if self.layout == "interleaved":
            body = np.empty(2 * len(semantic), np.int64)
            body[0::2] = semantic
            body[1::2] = acoustic + self.semantic_vocab_size
            return np.concatenate([head, body, tail]).astype(self.dtype)
        streams = [np.concatenate([head, s, tail]) for s in (semantic, acoustic)]
        return np.stack(streams).astype(self.dtype)

    def describe(self) -> dict:
        return {
            "layout": self.layout,
            "vocab_size": self.vocab_size,
            "dtype": np.dtype(self.dtype).name,
            "semantic": {"offset": 0, "size": self.semantic_vocab_size},
            "acoustic": {"offset": self.semantic_vocab_size if self.layout == "interleaved" else 0,
                         "size": self.acoustic_vocab_size},
            "special_tokens": self.special_ids,
            "frame": ("one (semantic, acoustic) pair = 2 consecutive ids" if self.layout == "interleaved"
                      else "stream 0 semantic, stream 1 acoustic, aligned"),
        }
