"""A CSV manifest listed as columns gives exactly what the row rule gives row by row: the same units
in the same order, the same failure rows, the same refused rows; and plain rows do take the
columnar path (or the comparison would prove nothing)."""

from __future__ import annotations

import csv
import io
import json
import os
import random

import pytest

from pipeline.errors import SourceError
from pipeline.sources import list_work, open_source, uri_rule
from pipeline.sources import manifest_columns as columns
from pipeline.sources.base import single_unit
from pipeline.sources.manifest_rows import BadRow, BadRows, row_item
from pipeline.sources.uri_rule import UriRule
from pipeline.sources.work_list import table_units
from tests.support.manifests import csv_dict_rows


def by_rows(text: str, rule: UriRule) -> tuple[list, list[str]]:
    """The reference: the row rule applied to each of DictReader's rows."""
    units, bad = [], BadRows()
    for number, row in enumerate(csv_dict_rows(text), 1):
        try:
            units.append(single_unit(row_item(row, rule=rule)))
        except BadRow as error:
            bad.add(number, error)
    return units, [bad.count, *bad.shown]


def by_columns(text: str, rule: UriRule, batch_rows: int) -> tuple[list, list[str]]:
    header, rows = columns.csv_header_and_rows(text)
    rows = list(rows)
    units, bad = [], BadRows()
    for start in range(0, len(rows), batch_rows):
        table = columns.csv_batch_table(header, rows[start:start + batch_rows], rule, start + 1, bad)
        units.extend(table_units(table))
    return units, [bad.count, *bad.shown]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    """A manifest's folder with real files, a link that stays inside and links that lead out."""
    (tmp_path / "audio").mkdir()
    for name in ("a.wav", "b.wav", "é.wav"):
        (tmp_path / "audio" / name).write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"x")
    os.symlink(tmp_path / "audio" / "a.wav", tmp_path / "audio" / "inside-link.wav")
    os.symlink(outside / "secret.wav", tmp_path / "audio" / "out-link.wav")
    os.symlink(outside, tmp_path / "out-folder")
    return tmp_path


URIS = [
    "audio/a.wav", "audio/b.wav", "audio/é.wav", "audio/missing.wav", "audio/inside-link.wav", "audio/out-link.wav",
    "out-folder/secret.wav", "a.wav", "日本/音.flac", "_x/y z.wav", "x.wav ", "audio//a.wav", "audio/./a.wav",
    "./audio/a.wav", "audio/../audio/a.wav", "../escape.wav", "audio/", " audio/a.wav", "\taudio/a.wav", "",
    "/etc/passwd", "s3://bucket/x.wav", "file:///etc/passwd", "http://host/x.wav", "a::b.wav", "audio/.hidden.wav",
    "audio/..x.wav", "-dash.wav", ".", "..", "audio/.", "audio/..",
]
IDS = ["", "id-1", "007", " spaced ", "tab\tid", "c1\x85", "line\u2028sep", "x" * 1024, "y" * 1025, "日本",
       "s3://KEY:SECRET@bucket/a.wav"]
SECONDS = ["", "0", "1.5", "-0", "-1", "+2", "1.", ".5", "1e1", "1E-1", " 2", "1_0", "abc", "inf", "nan",
           "1e400", "0x10", "3.000000000000000000000001", "30"]
LABELS = ["", "a;b", " x , y ", ",;", "/m/09x0r"]
TEXTS = ["", "hello", "a,b", "quoted \"x\"", "multi\nline"]


def test_every_kind_of_row_becomes_what_the_row_rule_makes_of_it(folder, monkeypatch):
    rule = UriRule(str(folder), what="the manifest's folder")
    shuffle = random.Random(20)
    header = ["id", "uri", "start_s", "end_s", "duration", "labels", "text", "speaker"]
    rows = [[""] * 8 for _ in range(60)]
    for row, uri in zip(rows, URIS * 2, strict=False):
        row[1] = uri
    rows += [["", uri] + [""] * 6 for uri in URIS]
    rows += [[id, "audio/a.wav"] + [""] * 6 for id in IDS]
    rows += [["s", "audio/a.wav", start, end, duration, "", "", ""]
             for start in SECONDS for end in SECONDS[::3] for duration in SECONDS[::5]]
    mostly_empty = SECONDS + [""] * 200
    mostly_plain_uris = URIS + ["audio/a.wav", "audio/b.wav", "audio/é.wav", "a.wav", "audio/missing.wav"] * 40
    for _ in range(3000):
        rows.append([shuffle.choice(IDS + ["", "id-1"] * 10), shuffle.choice(mostly_plain_uris), shuffle.choice(mostly_empty),
                     shuffle.choice(mostly_empty), shuffle.choice(mostly_empty), shuffle.choice(LABELS),
                     shuffle.choice(TEXTS), shuffle.choice(IDS[:4])])
    rows += [["short", "audio/a.wav"], ["long", "audio/b.wav", "1", "2", "", "", "t", "s", "extra", "more"]]
    text = csv_text(header, rows)
    expected = by_rows(text, UriRule(str(folder), what="the manifest's folder"))
    assert expected[1][0] > 100 and len(expected[0]) > 1000  # the cases refuse many rows, and keep many
    slow = []
    monkeypatch.setattr(columns, "row_item", lambda row, rule: slow.append(row) or row_item(row, rule=rule))
    for batch_rows in (7, 65_536):
        assert by_columns(text, rule, batch_rows) == expected
    assert len(slow) / 2 < len(rows) / 2, len(slow)  # most rows are plain: the columnar path answers them
    kept = [unit.item for unit in expected[0]]
    assert any(item.failure for item in kept) and any(item.meta for item in kept)
    assert any(item.end_s for item in kept) and any(item.labels for item in kept)


def test_plain_rows_take_the_columnar_path(folder, monkeypatch):
    rows = [[f"id-{n}", f"audio/{name}", "1", "2.5", "", "a;b", "t"]
            for n, name in enumerate(("a.wav", "b.wav", "é.wav", "missing.wav") * 50)]
    text = csv_text(["id", "uri", "start_s", "end_s", "duration", "labels", "text"], rows)
    calls = []
    monkeypatch.setattr(columns, "row_item", lambda row, rule: calls.append(row) or row_item(row, rule=rule))
    listed, _ = by_columns(text, UriRule(str(folder)), 64)
    assert calls == [] and len(listed) == 200
    assert listed[3].item.uri == str(folder / "audio" / "missing.wav") and listed[0].item.meta == {"text": "t"}
    assert (listed[0].item.start_s, listed[0].item.end_s, listed[0].item.labels) == (1.0, 2.5, ["a", "b"])


def test_a_repeated_column_name_sends_every_row_to_the_row_rule(folder):
    text = "id,uri,id\nfirst,audio/a.wav,second\n,audio/b.wav,\n"
    rule = UriRule(str(folder))
    assert by_columns(text, rule, 10) == by_rows(text, rule)
    assert [unit.key for unit in by_columns(text, rule, 10)[0]] == ["second", "audio/b.wav"]


def test_links_are_found_by_listing_a_folder_named_often(folder, monkeypatch):
    """After `LSTATS_BEFORE_SCAN` names in a folder its links come from one listing: the same answers."""
    monkeypatch.setattr(uri_rule, "LSTATS_BEFORE_SCAN", 3)
    scans = []
    real_scan = uri_rule._link_names
    monkeypatch.setattr(uri_rule, "_link_names", lambda folder: scans.append(folder) or real_scan(folder))
    names = ["a.wav", "b.wav", "missing.wav", "é.wav", "inside-link.wav", "out-link.wav"] * 3
    text = csv_text(["uri"], [[f"audio/{name}"] for name in names])
    rule = UriRule(str(folder))
    assert by_columns(text, rule, 4) == by_rows(text, UriRule(str(folder)))
    assert scans == [f"{folder / 'audio'}/"]
    failed = [unit.key for unit in by_columns(text, UriRule(str(folder)), 100)[0] if unit.item.failure]
    assert failed == ["audio/out-link.wav"] * 3


def test_absolute_paths_and_allowed_prefixes(folder):
    outside = f"{folder}-outside"
    text = csv_text(["uri"], [[str(folder / "audio" / "a.wav")], [f"{outside}/secret.wav"], ["/etc/passwd"]])
    for rule in (UriRule(str(folder)), UriRule(str(folder), allowed_prefixes=(outside,))):
        listed = by_columns(text, rule, 10)
        assert listed == by_rows(text, rule)
    assert [bool(u.item.failure) for u in listed[0]] == [False, False, True]


def test_a_manifest_on_an_object_store_joins_relative_paths_to_its_folder():
    rule = UriRule("s3://bucket/sets/one", what="the manifest's folder")
    text = csv_text(["uri"], [["a/x.wav"], ["../two/y.wav"], ["s3://bucket/sets/one/z.wav"], ["/abs.wav"], ["b.wav"]])
    listed = by_columns(text, rule, 10)
    assert listed == by_rows(text, rule)
    assert [u.uri for u in listed[0]][:2] == ["s3://bucket/sets/one/a/x.wav", "../two/y.wav"]


def test_the_listing_refuses_bad_rows_once_all_are_read(tmp_path):
    (tmp_path / "m.csv").write_text("id,uri,start_s\na,a.wav,-1\nb,b.wav,\nc\tx,c.wav,\n")
    with pytest.raises(SourceError, match=r"2 unusable row\(s\).*row 1: negative start.*row 3: id 'c\\tx'"):
        list_work(open_source(str(tmp_path / "m.csv")))
    (tmp_path / "ok.csv").write_text("id,uri\n\na,a.wav\n\nb,b.wav\n")
    assert [u.key for u in list_work(open_source(str(tmp_path / "ok.csv")))] == ["a", "b"]
    assert [u.key for u in open_source(str(tmp_path / "ok.csv")).list_units()] == ["a", "b"]


# --- typed rows: JSON lines and Parquet -----------------------------------------------------------

def dict_rows_by_rows(rows: list[dict], rule: UriRule) -> tuple[list, list[str]]:
    units, bad = [], BadRows()
    for number, row in enumerate(rows, 1):
        try:
            units.append(single_unit(row_item(row, rule=rule)))
        except BadRow as error:
            bad.add(number, error)
    return units, [bad.count, *bad.shown]


def dict_rows_by_columns(rows: list[dict], rule: UriRule, batch_rows: int) -> tuple[list, list[str]]:
    units, bad = [], BadRows()
    for start in range(0, len(rows), batch_rows):
        units.extend(table_units(columns.dict_batch_table(rows[start:start + batch_rows], rule, start + 1, bad)))
    return units, [bad.count, *bad.shown]


TYPED_IDS = ["", "id-1", "007", 7, 0, -3, True, 1.5, None, ["x"], "tab\tid", "x" * 1025, 10**30]
TYPED_SECONDS = [None, 0, 1, 1.5, -0.0, -1, 2**70, 10**400, True, "1.5", " 2", float("nan"), float("inf"), [1],
                 3.000000000000001, 1e-300]
TYPED_LABELS = [None, "a;b", ["x", 1], [], " , "]
TYPED_META = [None, "hello", 7, 0.25, float("nan"), True, ["list"], {"d": 1}, ""]


def test_typed_rows_become_what_the_row_rule_makes_of_them(folder, monkeypatch):
    """JSON lines and Parquet rows carry typed values: ints as ids, numbers and strings as seconds,
    typed meta, rows with other columns, Lhotse rows. Each becomes what the row rule makes of it."""
    shuffle = random.Random(7)
    uris = URIS + [None, 5, ["a.wav"]] + ["audio/a.wav", "audio/b.wav", "a.wav", "audio/missing.wav"] * 40
    rows = []
    for _ in range(3000):
        row = {"audio_filepath": shuffle.choice(uris),
               "id": shuffle.choice(TYPED_IDS + [None] * 20 + [f"id-{len(rows)}"] * 80)}
        for name in ("offset", "duration", "end"):
            row[name] = shuffle.choice(TYPED_SECONDS + [None] * 250 + [1.0, 2] * 10)
        for name in ("labels", "text", "speaker", "score"):
            row[name] = shuffle.choice(TYPED_LABELS if name == "labels" else TYPED_META)
        if shuffle.random() < 0.1:  # the same columns in another order
            row = dict(reversed(list(row.items())))
        if shuffle.random() < 0.05:  # other columns: another name for a part, a part missing
            row["start_s"] = 0.5
        if shuffle.random() < 0.05:
            del row["id"]
        rows.append(row)
    rows.append({"sources": [{"type": "file", "source": "audio/a.wav", "channels": [0]}], "id": "lhotse",
                 "supervisions": [{"text": "hi", "speaker": "s"}]})
    rows.append({"recording": {"sources": [{"type": "file", "source": "audio/b.wav"}]}, "id": "lhotse-2"})
    rule = UriRule(str(folder))
    expected = dict_rows_by_rows(rows, UriRule(str(folder)))
    assert expected[1][0] > 100 and len(expected[0]) > 1000
    slow = []
    monkeypatch.setattr(columns, "row_item", lambda row, rule: slow.append(row) or row_item(row, rule=rule))
    for batch_rows in (7, 65_536):
        assert dict_rows_by_columns(rows, rule, batch_rows) == expected
    assert len(slow) / 2 < len(rows) / 2, len(slow)
    kept = [unit.item for unit in expected[0]]
    assert any(isinstance(item.meta and item.meta.get("speaker"), int) for item in kept)
    assert any(item.end_s for item in kept) and any(item.labels for item in kept)


def test_jsonl_and_parquet_manifests_are_listed_as_columns(folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"audio_filepath": f"audio/{name}", "duration": 1.25, "text": f"t{n}", "id": n}
            for n, name in enumerate(["a.wav", "b.wav", "é.wav", "missing.wav"] * 3)]
    (folder / "m.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), folder / "m.parquet")
    expected = dict_rows_by_rows(rows, UriRule(str(folder), what="the manifest's folder"))[0]
    for name in ("m.jsonl", "m.parquet"):
        assert list(list_work(open_source(str(folder / name)))) == expected
    assert expected[1].key == "1" and expected[1].item.meta == {"text": "t1"} and expected[1].item.end_s == 1.25
