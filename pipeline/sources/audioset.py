"""AudioSet segment CSVs joined with self-hosted audio files.

CSV format (`balanced_train_segments.csv` etc.): 3 header lines starting with `#`, then
`YTID, start_seconds, end_seconds, "mid1,mid2,..."`. Files under `audio_root` are matched as
`{YTID}_{start}_{end}.{flac,wav,...}` (the CSV's own number text, or with 3 decimals, or integer
seconds: the file is the segment) or `{YTID}.{ext}` (the whole video's audio: the segment
start-end is cut from it, and its token rows' span says so); a segment with no file becomes a
recorded failure. The files a CSV names are URIs from data (`uri_rule.py`): only under
`--audio-root` (or an `--allow-uri-prefix`); a YTID that would lead elsewhere is a failure row.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import pickle
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa

from ..errors import SourceError
from ..records import STAGE_READ, Failure
from .base import AUDIO_EXTENSIONS
from .files import FilesSource
from .ids import BadIds
from .listing import find_files, protocol_prefix, relative_id
from .uri_rule import UriOutsideRule, UriRule
from .work_list import BATCH_UNITS, WORK_SCHEMA


class Segment(NamedTuple):
    ytid: str
    start: str  # the CSV's own number text: file names may repeat it
    end: str
    start_s: float
    end_s: float
    labels: list[str]


def iter_segments(text: str) -> Iterator[Segment]:
    """The segments of an AudioSet CSV, one at a time; a malformed line is a SourceError."""
    lines = (line for line in io.StringIO(text) if line.strip() and not line.startswith("#"))
    for fields in csv.reader(lines, skipinitialspace=True):
        if len(fields) < 4:
            raise SourceError(f"malformed AudioSet segment line: {fields!r}")
        ytid, start, end, labels = fields[0].strip(), fields[1].strip(), fields[2].strip(), fields[3]
        try:
            start_s, end_s = float(start), float(end)
        except ValueError:
            start_s = end_s = math.nan
        if not (math.isfinite(start_s) and math.isfinite(end_s)):
            raise SourceError(f"malformed AudioSet segment line (start and end must be seconds): {fields!r}")
        yield Segment(ytid, start, end, start_s, end_s, [m.strip() for m in labels.split(",") if m.strip()])


def parse_class_labels(text: str) -> dict[str, str]:
    """`class_labels_indices.csv` (index,mid,display_name) → mid → display name."""
    reader = csv.DictReader(io.StringIO(text))
    return {row["mid"]: row["display_name"] for row in reader}


def segment_id(seg: Segment) -> str:
    return f"{seg.ytid}_{seg.start_s:.3f}_{seg.end_s:.3f}"


def candidate_stems(seg: Segment) -> Iterator[str]:
    """The names (without extension) a segment's file may have, in order of preference."""
    ytid, s, e = seg.ytid, seg.start_s, seg.end_s
    yield f"{ytid}_{seg.start}_{seg.end}"
    yield f"{ytid}_{s:.3f}_{e:.3f}"
    yield f"{ytid}_{s:.1f}_{e:.1f}"
    yield f"{ytid}_{int(s)}_{int(e)}"
    yield f"{ytid}_{int(s * 1000)}_{int(e * 1000)}"
    yield ytid


@dataclass
class AudioSetSource(FilesSource):
    audio_root: str = ""
    class_labels_url: str | None = None

    kind = "audioset"

    def work_tables(self) -> Iterator[pa.Table]:
        """The segments' units as columns, a batch at a time: a CSV of millions of segments is never
        held as objects (the audio root's files are, as the index the segments are joined on)."""
        if not self.audio_root:
            raise SourceError("an AudioSet segments CSV needs --audio-root (where the audio files are)")
        fs, path = self.filesystem()
        segments = iter_segments(fs.cat_file(path).decode("utf-8"))
        names = {}
        if self.class_labels_url:
            lfs, lpath = self.filesystem(self.class_labels_url)
            names = parse_class_labels(lfs.cat_file(lpath).decode("utf-8"))
        afs, root = self.filesystem(self.audio_root)
        root = root.rstrip("/") or "/"
        rule = self.uri_rule(protocol_prefix(afs) + root, what="--audio-root")
        by_stem = {}
        for file in sorted(find_files(afs, root)):  # (sorted: the first file of a stem wins)
            if file.lower().endswith(AUDIO_EXTENSIONS):
                by_stem.setdefault(posixpath.splitext(posixpath.basename(file))[0], relative_id(file, root))
        return self._tables(segments, by_stem, names, rule)

    def _tables(self, segments: Iterator[Segment], by_stem: dict[str, str], names: dict[str, str],
                rule: UriRule) -> Iterator[pa.Table]:
        bad_ids = BadIds(f"AudioSet segments {self.url}")
        while batch := list(itertools.islice(segments, BATCH_UNITS)):
            keys, files, starts, ends = [], [], [], []
            for seg in batch:
                stem = next((s for s in candidate_stems(seg) if s in by_stem), None)
                keys.append(segment_id(seg))
                files.append(by_stem[stem] if stem else f"{seg.ytid}_{seg.start}_{seg.end}.flac")
                whole = stem == seg.ytid  # the whole video's audio: cut the segment from it
                starts.append(seg.start_s if whole else None)
                ends.append(seg.end_s if whole else None)
            uris = rule.resolve_plain(pa.array(files, pa.string())).to_pylist()
            failures = [None] * len(batch)
            for at, uri in enumerate(uris):
                if uri is None:
                    try:
                        uris[at] = rule.resolve(files[at])
                    except UriOutsideRule as error:
                        uris[at] = files[at]
                        failures[at] = pickle.dumps(
                            Failure.from_error(keys[at], files[at], STAGE_READ, error, "UriOutsideRule"))
            bad_ids.see_all(keys, uris)
            labels = [seg.labels for seg in batch]
            yield pa.table({
                "key": keys, "uri": uris, "container": [False] * len(batch), "labels": labels,
                "human_labels": [[names.get(m, m) for m in mids] for mids in labels] if names else [None] * len(batch),
                "start_s": starts, "end_s": ends, "meta": [None] * len(batch), "failure": failures,
                "duplicates": [None] * len(batch)}, schema=WORK_SCHEMA)
        bad_ids.raise_if_any()
