"""WebDataset-style tar shards (local or any fsspec URL): audio members grouped by key, optional JSON.

Members are grouped by key (the member path up to the first dot of its name) as WebDataset does:
consecutive members with the same key form one sample, and its JSON member's `labels` /
`human_labels` fields and other scalar fields (into `meta`) go to each of its audio members. Ids
(`ids.py`): `<shard id>/<key>`, the shard id being its path relative to the listing root
(`listing.py`, the same whatever the spelling); a key with several audio members (`x.aiff`,
`x.mka`) gives one input per member, `<shard id>/<key>.<ext>`, never one silently.

Nothing in a shard vanishes: a key with no audio member, a member that is a link, FIFO or device
(never followed), an invalid id and a second copy of an id in the shard are each a failure row
(under the member's position in the shard, `<shard id>#<n>`, when the id itself cannot be used).
A shard is read as a stream: every complete input before a damaged or cut part is yielded, and
the unreadable rest becomes one failure of the shard (retryable when it was an I/O error, not
when the tar itself is cut or malformed).
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..content_errors import admit_failure
from ..records import STAGE_READ, SourceItem
from .base import AUDIO_EXTENSIONS, Source, WorkUnit, failed_item, is_transient
from .ids import DUPLICATE_ERROR, duplicate_message, id_problem
from .listing import list_files
from .manifest_rows import LABEL_COLUMNS, scalar_fields, split_labels
from .uris import member_uri

_MEMBER_KINDS = ((tarfile.TarInfo.issym, "a symbolic link"), (tarfile.TarInfo.islnk, "a hard link"),
                 (tarfile.TarInfo.isfifo, "a FIFO"), (tarfile.TarInfo.ischr, "a character device"),
                 (tarfile.TarInfo.isblk, "a block device"))


class TarSource(Source):
    kind = "tar"

    def _list_units(self) -> list[WorkUnit]:
        listing = list_files(self.url, self.storage_options, keep=lambda p: p.endswith(".tar"),
                             found=self.found_files())
        return [WorkUnit(key=listing.id_of(p), uri=listing.uri_of(p)) for p in listing.paths]

    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        def open_stream():
            fs, path = self.filesystem(unit.uri)
            return fs.open(path, "rb")

        try:
            handle = self.with_retries(open_stream)
        except Exception as error:  # noqa: BLE001 - recorded against the shard, the run goes on
            yield self.read_failure(unit.key, unit.uri, error)
            return
        shard = _Shard(unit, keep_first_silently=self.dedupe == "first")
        try:
            with handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
                for ordinal, member in enumerate(tar):
                    if member.isfile():
                        yield from shard.add(_Member(member.name, ordinal, tar.extractfile(member).read()))
                    elif not member.isdir():
                        yield shard.not_read(member, ordinal)
        except Exception as error:  # noqa: BLE001 - the members read stay, the rest is one failure
            admit_failure(STAGE_READ, error, retryable=is_transient(error))  # else a Fault: not the shard's bytes
            last = shard.last_member
            where = f"after member {last!r}" if last else "before its first member"
            yield failed_item(
                unit.key, unit.uri, STAGE_READ,
                f"shard unreadable {where}: {shard.samples} input(s) before it were read, the rest is lost "
                f"({type(error).__name__}: {error})",
                error_type=type(error).__name__, retryable=is_transient(error),
            )
            return
        yield from shard.flush()


@dataclass(slots=True)
class _Member:
    name: str
    ordinal: int  # position in the shard, counting every member
    data: bytes

    @property
    def key_and_ext(self) -> tuple[str, str]:
        directory, base = posixpath.split(self.name)
        stem, _, ext = base.partition(".")
        return posixpath.join(directory, stem), ext

    @property
    def is_audio(self) -> bool:
        return "." + self.key_and_ext[1].split(".")[-1].lower() in AUDIO_EXTENSIONS


@dataclass
class _Shard:
    """The state of one shard's read: the sample being gathered and the ids already given out."""

    unit: WorkUnit
    keep_first_silently: bool
    key: str | None = None
    members: list[_Member] = field(default_factory=list)
    taken: dict[str, str] = field(default_factory=dict)  # id -> place of the member that holds it
    samples: int = 0
    last_member: str | None = None

    def add(self, member: _Member) -> Iterator[SourceItem]:
        key = member.key_and_ext[0]
        if key != self.key:
            yield from self.flush()
        self.key, self.last_member = key, member.name
        self.members.append(member)

    def flush(self) -> Iterator[SourceItem]:
        members, self.members = self.members, []
        if not members:
            return
        self.samples += 1
        audio = [m for m in members if m.is_audio]
        item_base = f"{self.unit.key}/{self.key}"
        if not audio:
            names = sorted(m.name for m in members)
            made = [self._checked(item_base, members[0], lambda id: failed_item(
                id, member_uri(self.unit.uri, self.key), STAGE_READ,
                f"no audio member for key {self.key!r} (members: {names})", "MissingAudioMember"))]
        else:
            fields = _json_fields(members)
            several = len({m.name for m in audio}) > 1
            made = [self._checked(f"{item_base}.{m.key_and_ext[1]}" if several else item_base, m,
                                  lambda id, m=m: _item(id, self.unit, m, fields)) for m in audio]
        yield from (item for item in made if item is not None)

    def not_read(self, info: tarfile.TarInfo, ordinal: int) -> SourceItem:
        kind = next((name for test, name in _MEMBER_KINDS if test(info)), "not a regular file")
        target = f" to {info.linkname[:200]!r}" if info.linkname else ""
        return failed_item(f"{self.unit.key}#{ordinal}", member_uri(self.unit.uri, info.name), STAGE_READ,
                           f"member {info.name[:200]!r} is {kind}{target}: links, FIFOs and devices in a shard "
                           "are not read", "UnsupportedTarMember")

    def _checked(self, item_id: str, member: _Member, make) -> SourceItem | None:
        """`make(item_id)`, or the failure of a bad or already taken id (None: a later copy that
        `--dedupe first` leaves out)."""
        positional = f"{self.unit.key}#{member.ordinal}"
        uri = member_uri(self.unit.uri, member.name)
        problem = id_problem(item_id)
        if problem:  # the failure is kept under the member's position, never a rewritten id
            return failed_item(positional, uri, STAGE_READ, problem, "InvalidId")
        place = f"member {member.ordinal} ({member.name[:200]!r}) of {self.unit.key}"
        first = self.taken.setdefault(item_id, place)
        if first == place:
            return make(item_id)
        if self.keep_first_silently:
            return None
        return failed_item(positional, uri, STAGE_READ, duplicate_message(item_id, place, first), DUPLICATE_ERROR)


def _item(item_id: str, unit: WorkUnit, member: _Member, fields: dict) -> SourceItem:
    meta = scalar_fields(fields, exclude=LABEL_COLUMNS)
    return SourceItem(
        id=item_id, uri=member_uri(unit.uri, member.name), data=member.data, labels=split_labels(fields.get("labels")),
        human_labels=split_labels(fields.get("human_labels")), meta=meta or None,
    )


def _json_fields(members: list[_Member]) -> dict:
    for member in members:
        if member.key_and_ext[1].lower().endswith("json"):
            try:
                value = json.loads(member.data)
                return value if isinstance(value, dict) else {}
            except ValueError:
                return {}
    return {}
