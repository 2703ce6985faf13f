"""The work list: units as columns, exactly as listed, and the plan's steps over them vectorised."""

from __future__ import annotations

import pytest

from pipeline.errors import SourceError
from pipeline.records import Failure, SourceItem
from pipeline.sources import WorkList, WorkUnit, dedupe_units, list_work, open_source
from pipeline.sources.base import single_unit
from pipeline.sources.work_list import units_table


def units() -> list[WorkUnit]:
    plain = single_unit(SourceItem(id="a.flac", uri="/data/a.flac"))
    full = single_unit(SourceItem(id="seg-1", uri="s3://b/v.flac", labels=["/m/09x0r"], human_labels=["Speech"],
                                  start_s=30.0, end_s=40.0, meta={"text": "hi", "speaker": 7, "score": 0.25,
                                                                  "ok": True}))
    refused = single_unit(SourceItem(id="c", uri="../c.flac", failure=Failure("c", "../c.flac", "read",
                                                                                "UriOutsideRule", "outside")))
    container = WorkUnit("shards/0.tar", "s3://b/shards/0.tar", duplicates={3: "row 0 of 1.parquet"})
    return [plain, full, refused, container]


def test_units_come_back_exactly_as_listed_in_every_batch_size():
    for batch in (1, 2, 65_536):
        assert list(WorkList.from_units(iter(units()), batch_units=batch)) == units()
    assert list(WorkList.from_units([])) == [] and len(WorkList.from_units([])) == 0


def test_the_plan_steps_work_on_columns():
    work = WorkList.from_units(units() + [single_unit(SourceItem(id="d", uri="/data/d.flac"))])
    assert work.containers == 1
    assert [u.key for u in work.container_units()] == ["shards/0.tar"]
    assert work.single_keys().to_pylist() == ["a.flac", "seg-1", "c", "d"]
    left = work.without_keys({"a.flac", "d", "shards/0.tar"})  # a container is never left out by id
    assert [u.key for u in left] == ["seg-1", "c", "shards/0.tar"]
    assert [u.key for u in work.head(2)] == ["a.flac", "seg-1"]
    assert list(work.readable_uris()) == ["/data/a.flac", "s3://b/v.flac", "s3://b/shards/0.tar", "/data/d.flac"]
    blocks = work.blocks(3)
    assert len(blocks) == 3 and [u for b in blocks for u in WorkList(b)] == list(work)
    assert work.blocks(1000)[0].num_rows == 1 and len(work.blocks(1000)) == 5


def test_dedupe_refuses_or_keeps_the_first_of_each_id_in_listing_order():
    listed = [single_unit(SourceItem(id=i, uri=f"/x/{n}.flac")) for n, i in enumerate("abacbd")]
    work = WorkList.from_units(listed)
    with pytest.raises(SourceError, match=r"2 id\(s\) are listed more than once: 'a' x2, 'b' x2"):
        dedupe_units(work, "refuse")
    assert [(u.key, u.uri) for u in dedupe_units(work, "first")] == [
        ("a", "/x/0.flac"), ("b", "/x/1.flac"), ("c", "/x/3.flac"), ("d", "/x/5.flac")]


def test_a_manifest_is_listed_into_columns_row_by_row(tmp_path):
    rows = "".join(f'{{"id": "clip-{n}", "path": "{n}.wav", "duration": 1.5, "text": "t{n}"}}\n' for n in range(5))
    (tmp_path / "m.jsonl").write_text(rows + "\n" + '{"id": "clip-9", "path": "9.wav", "end": 0}\n')
    with pytest.raises(SourceError, match=r"1 unusable row\(s\).*row 6: end 0.0 s is not after start"):
        list_work(open_source(str(tmp_path / "m.jsonl")))
    (tmp_path / "m.jsonl").write_text(rows)
    work = list_work(open_source(str(tmp_path / "m.jsonl")))
    assert [u.item.meta for u in work] == [{"text": f"t{n}"} for n in range(5)]
    assert [u.item.end_s for u in work] == [1.5] * 5
    assert units_table(list(work)).equals(work.table.combine_chunks())


def test_csv_rows_are_what_dictreader_gives_with_empty_cells_as_none():
    import csv
    import io

    from tests.support.manifests import csv_dict_rows

    text = ('id,uri,text,id\n'
            'a,x.wav,"two\nlines",a2\n'  # a quoted newline; a repeated column name: the last one wins
            '\n'  # a blank line
            'b,y.wav\n'  # short: the rest is None
            'c,z.wav,t,c2,extra,more\n'  # long: the extra cells are dropped
            ',w.wav,"",\n')
    expected = [{k: (v if v != "" else None) for k, v in row.items() if k is not None}
                for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert list(csv_dict_rows(text)) == expected and len(expected) == 4
    assert list(csv_dict_rows("")) == [] and list(csv_dict_rows("id,uri\n")) == []
