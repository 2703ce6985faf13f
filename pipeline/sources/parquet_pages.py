"""The pages of one Parquet column chunk, from their headers alone: how many values each holds and
how large it is once decompressed, so a reader can refuse a page before decoding it.

pyarrow decodes a whole page to reach any value in it and says nothing of page sizes, and a 23 KB
zstd page can decompress to 500 MB. Page headers are Thrift compact-protocol structs in front of
each page (parquet-format's `PageHeader`); this module reads only them, a few bytes per page.
"""

from __future__ import annotations

from dataclasses import dataclass

DICTIONARY_PAGE = 2
DATA_PAGE, DATA_PAGE_V2 = 0, 3
MAX_HEADER_BYTES = 1 << 20  # a page header is a few dozen bytes (statistics are capped at 4 KB by writers)
_FIRST_READ = 4096

# PageHeader field ids (parquet.thrift)
_TYPE, _UNCOMPRESSED, _COMPRESSED = 1, 2, 3
_DATA_HEADER, _DICTIONARY_HEADER, _DATA_HEADER_V2 = 5, 7, 8
_NUM_VALUES = 1  # field 1 of DataPageHeader, DictionaryPageHeader and DataPageHeaderV2


@dataclass(frozen=True, slots=True)
class Page:
    first_value: int  # index, in the column chunk, of the page's first value (a dictionary page: 0)
    values: int  # values in the page (0 for a dictionary page: they are not rows)
    uncompressed_bytes: int
    dictionary: bool


def column_pages(handle, chunk) -> list[Page]:
    """The pages of column chunk `chunk` (pyarrow `ColumnChunkMetaData`) of the open file `handle`."""
    offset = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    end = offset + chunk.total_compressed_size
    pages, first_value = [], 0
    while offset < end and first_value < chunk.num_values:
        header, length = _read_header(handle, offset)
        kind = header.get(_TYPE)
        if kind == DICTIONARY_PAGE:
            pages.append(Page(first_value, 0, header.get(_UNCOMPRESSED, 0), True))
        elif kind in (DATA_PAGE, DATA_PAGE_V2):
            values = (header.get(_DATA_HEADER) or header.get(_DATA_HEADER_V2) or {}).get(_NUM_VALUES, 0)
            pages.append(Page(first_value, values, header.get(_UNCOMPRESSED, 0), False))
            first_value += values
        compressed = header.get(_COMPRESSED)
        if not isinstance(compressed, int) or compressed < 0:
            raise ValueError(f"page header at byte {offset} has no compressed size")
        offset += length + compressed
    return pages


def _read_header(handle, offset: int) -> tuple[dict, int]:
    size = _FIRST_READ
    while True:
        handle.seek(offset)
        buffer = handle.read(size)
        try:
            reader = _Compact(buffer)
            return reader.struct(), reader.pos
        except IndexError:  # the header is longer than what was read
            if size >= MAX_HEADER_BYTES or len(buffer) < size:
                raise ValueError(f"page header at byte {offset} is cut or over {MAX_HEADER_BYTES} bytes") from None
            size *= 4


class _Compact:
    """Just enough of Thrift's compact protocol to read a struct: integers and nested structs are
    kept, everything else (strings, statistics, lists) is skipped."""

    def __init__(self, buffer: bytes) -> None:
        self.buffer, self.pos = buffer, 0

    def byte(self) -> int:
        value = self.buffer[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            if not value & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ValueError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def struct(self) -> dict:
        fields, field_id = {}, 0
        while True:
            head = self.byte()
            if head == 0:
                return fields
            delta, kind = head >> 4, head & 0x0F
            field_id = field_id + delta if delta else self.zigzag()
            fields[field_id] = self.value(kind)

    def value(self, kind: int):
        if kind in (1, 2):  # booleans, in the field header
            return kind == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.skip(8)
            return None
        if kind == 8:
            self.skip(self.varint())
            return None
        if kind in (9, 10):
            head = self.byte()
            count = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(count):
                self.element(head & 0x0F)
            return None
        if kind == 11:
            count = self.varint()
            types = self.byte() if count else 0
            for _ in range(count):
                self.element(types >> 4)
                self.element(types & 0x0F)
            return None
        if kind == 12:
            return self.struct()
        raise ValueError(f"unknown Thrift compact type {kind}")

    def element(self, kind: int) -> None:
        if kind in (1, 2):  # a boolean in a list or map is a whole byte
            self.byte()
        else:
            self.value(kind)

    def skip(self, count: int) -> None:
        if self.pos + count > len(self.buffer):
            raise IndexError("past the end")
        self.pos += count
