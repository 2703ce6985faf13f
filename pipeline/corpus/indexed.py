"""Megatron-LM / GPT-NeoX indexed dataset files (`MMapIndexedDataset` layout), written and read.

`.idx`: magic b"MMIDIDX\\x00\\x00", version <Q 1, dtype code <B, number of sequences <Q, number of
document-index entries <Q, then int32 sizes, int64 byte pointers, int64 document index.
`.bin`: the token ids of all sequences back to back. One sequence = one clip here, so the
document index is 0..N.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


class IndexedWriter:
    def __init__(self, prefix: str | Path, dtype) -> None:
        self.prefix, self.dtype = Path(prefix), np.dtype(dtype)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._bin = open(self.prefix.with_suffix(".bin"), "wb")
        self.sizes: list[int] = []

    def add(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, self.dtype)
        self._bin.write(ids.tobytes(order="C"))
        self.sizes.append(ids.size)

    def close(self) -> None:
        self._bin.close()
        sizes = np.asarray(self.sizes, np.int32)
        pointers = np.zeros(len(sizes), np.int64)
        if len(sizes) > 1:
            pointers[1:] = np.cumsum(sizes[:-1], dtype=np.int64) * self.dtype.itemsize
        doc_idx = np.arange(len(sizes) + 1, dtype=np.int64)
        with open(self.prefix.with_suffix(".idx"), "wb") as idx:
            idx.write(MAGIC)
            idx.write(struct.pack("<Q", 1))
            idx.write(struct.pack("<B", DTYPE_CODES[self.dtype]))
            idx.write(struct.pack("<Q", len(sizes)))
            idx.write(struct.pack("<Q", len(doc_idx)))
            idx.write(sizes.tobytes())
            idx.write(pointers.tobytes())
            idx.write(doc_idx.tobytes())


def read_indexed(prefix: str | Path) -> list[np.ndarray]:
    """All sequences of an indexed dataset (for tests and inspection)."""
    prefix = Path(prefix)
    data = prefix.with_suffix(".idx").read_bytes()
    if data[:9] != MAGIC:
        raise ValueError(f"{prefix}.idx is not an MMIDIDX index")
    version, = struct.unpack_from("<Q", data, 9)
    code, = struct.unpack_from("<B", data, 17)
    count, doc_count = struct.unpack_from("<QQ", data, 18)
    offset = 34
    sizes = np.frombuffer(data, np.int32, count, offset)
    pointers = np.frombuffer(data, np.int64, count, offset + 4 * count)
    dtype = CODE_DTYPES[code]
    tokens = np.memmap(prefix.with_suffix(".bin"), dtype=dtype, mode="r")
    assert version == 1 and doc_count == count + 1
    starts = [p // dtype.itemsize for p in pointers]
    return [np.asarray(tokens[start : start + s]) for start, s in zip(starts, sizes, strict=True)]
