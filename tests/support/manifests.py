"""CSV rows as the row rule reads them, from the pipeline's own CSV reader: the reference the tests
compare the columnar listing with, and prove equal to `csv.DictReader`."""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.sources.manifest_columns import csv_header_and_rows, csv_row


def csv_dict_rows(text: str) -> Iterator[dict]:
    header, rows = csv_header_and_rows(text)
    for values in rows:
        yield csv_row(header, values)
