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
import posixpath
from dataclasses import dataclass

from ..errors import SourceError
from ..records import STAGE_READ, Failure, SourceItem
from .base import AUDIO_EXTENSIONS, WorkUnit, single_unit
from .files import FilesSource
from .ids import check_ids
from .listing import protocol_prefix, relative_id
from .uri_rule import UriOutsideRule


def parse_segments_csv(text: str) -> list[dict]:
    rows = []
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for fields in csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True):
        if len(fields) < 4:
            raise SourceError(f"malformed AudioSet segment line: {fields!r}")
        ytid, start, end, labels = fields[0].strip(), fields[1].strip(), fields[2].strip(), fields[3]
        mids = [m.strip() for m in labels.split(",") if m.strip()]
        rows.append({"ytid": ytid, "start": start, "end": end, "labels": mids})
    return rows


def parse_class_labels(text: str) -> dict[str, str]:
    """`class_labels_indices.csv` (index,mid,display_name) → mid → display name."""
    reader = csv.DictReader(io.StringIO(text))
    return {row["mid"]: row["display_name"] for row in reader}


def segment_id(ytid: str, start: str, end: str) -> str:
    return f"{ytid}_{float(start):.3f}_{float(end):.3f}"


def candidate_stems(ytid: str, start: str, end: str) -> list[str]:
    s, e = float(start), float(end)
    return [
        f"{ytid}_{start}_{end}",
        f"{ytid}_{s:.3f}_{e:.3f}",
        f"{ytid}_{s:.1f}_{e:.1f}",
        f"{ytid}_{int(s)}_{int(e)}",
        f"{ytid}_{int(s * 1000)}_{int(e * 1000)}",
        ytid,
    ]


@dataclass
class AudioSetSource(FilesSource):
    audio_root: str = ""
    class_labels_url: str | None = None

    kind = "audioset"

    def _list_units(self) -> list[WorkUnit]:
        if not self.audio_root:
            raise SourceError("an AudioSet segments CSV needs --audio-root (where the audio files are)")
        fs, path = self.filesystem()
        segments = parse_segments_csv(fs.cat_file(path).decode("utf-8"))
        names = {}
        if self.class_labels_url:
            lfs, lpath = self.filesystem(self.class_labels_url)
            names = parse_class_labels(lfs.cat_file(lpath).decode("utf-8"))
        afs, root = self.filesystem(self.audio_root)
        root = root.rstrip("/") or "/"
        rule = self.uri_rule(protocol_prefix(afs) + root, what="--audio-root")
        by_stem = {}
        for file in afs.find(root):
            if file.lower().endswith(AUDIO_EXTENSIONS):
                by_stem.setdefault(posixpath.splitext(posixpath.basename(file))[0], file)
        units = []
        for seg in segments:
            stem = next((s for s in candidate_stems(seg["ytid"], seg["start"], seg["end"]) if s in by_stem), None)
            name = relative_id(by_stem[stem], root) if stem else f"{seg['ytid']}_{seg['start']}_{seg['end']}.flac"
            human = [names.get(m, m) for m in seg["labels"]] if names else None
            item = SourceItem(id=segment_id(seg["ytid"], seg["start"], seg["end"]), uri=name, labels=seg["labels"],
                              human_labels=human)
            if stem == seg["ytid"]:  # the whole video's audio: cut the segment from it
                item.start_s, item.end_s = float(seg["start"]), float(seg["end"])
            try:
                item.uri = rule.resolve(name)
            except UriOutsideRule as error:
                item.failure = Failure.from_error(item.id, name, STAGE_READ, error, "UriOutsideRule")
            units.append(single_unit(item))
        check_ids(units, f"AudioSet segments {self.url}")
        return units
