"""WebDataset-style tar shards (local or any fsspec URL): one audio member per key, optional JSON.

Members are grouped by key (the member path without its extension) as WebDataset does:
consecutive members with the same key form one input. The item id is `<shard path relative to
the source root>/<key>`; labels come from the JSON member's `labels` / `human_labels` fields and
its other scalar fields go into `meta`. A shard is read as a stream: every complete input before
a damaged or cut part is yielded, and the unreadable rest becomes one failure of the shard
(retryable when it was an I/O error, not when the tar itself is cut or malformed).
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

from ..content_errors import admit_failure
from ..records import STAGE_READ, SourceItem
from .base import (
    AUDIO_EXTENSIONS,
    Source,
    WorkUnit,
    failed_item,
    is_transient,
    protocol_prefix,
    relative_id,
)
from .files import has_glob
from .ids import id_problem
from .manifest import LABEL_COLUMNS, scalar_fields, split_labels
from .uris import member_uri


class TarSource(Source):
    kind = "tar"

    def _list_units(self) -> list[WorkUnit]:
        fs, path = self.filesystem()
        if has_glob(path):
            shards = fs.glob(path)
            root = posixpath.dirname(path.split("*")[0].rstrip("/"))
        elif path.endswith(".tar"):
            shards, root = [path], posixpath.dirname(path)
        else:
            root = path.rstrip("/")
            shards = [p for p in fs.find(root) if p.endswith(".tar")]
        prefix = protocol_prefix(fs)
        return [WorkUnit(key=relative_id(p, root), uri=prefix + p) for p in sorted(shards)]

    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        def open_stream():
            fs, path = self.filesystem(unit.uri)
            return fs.open(path, "rb")

        try:
            handle = self.with_retries(open_stream)
        except Exception as error:  # noqa: BLE001 - recorded against the shard, the run goes on
            yield self.read_failure(unit.key, unit.uri, error)
            return
        key, members, groups, last_member = None, {}, 0, None
        try:
            with handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    member_key, ext = _split_key(member.name)
                    data = tar.extractfile(member).read()
                    if member_key != key and members:
                        yield _group_item(unit, key, members, groups)
                        groups, members = groups + 1, {}
                    key, last_member = member_key, member.name
                    members[ext] = data
        except Exception as error:  # noqa: BLE001 - the members read stay, the rest is one failure
            admit_failure(STAGE_READ, error, retryable=is_transient(error))  # else a Fault: not the shard's bytes
            where = f"after member {last_member!r}" if last_member else "before its first member"
            yield failed_item(
                unit.key, unit.uri, STAGE_READ,
                f"shard unreadable {where}: {groups} input(s) before it were read, the rest is lost "
                f"({type(error).__name__}: {error})",
                error_type=type(error).__name__, retryable=is_transient(error),
            )
            return
        if members:
            yield _group_item(unit, key, members, groups)


def _group_item(unit: WorkUnit, key: str, members: dict[str, bytes], position: int) -> SourceItem:
    item_id = f"{unit.key}/{key}"
    audio_ext = next((e for e in members if "." + e.split(".")[-1].lower() in AUDIO_EXTENSIONS), None)
    uri = member_uri(unit.uri, f"{key}.{audio_ext}" if audio_ext else key)
    problem = id_problem(item_id)
    if problem:  # the failure is kept under the member's position in the shard, never a rewritten id
        return failed_item(f"{unit.key}#{position}", uri, STAGE_READ, problem, "InvalidId")
    if audio_ext is None:
        return failed_item(item_id, uri, STAGE_READ, f"no audio member for key {key!r} (members: {sorted(members)})",
                           "MissingAudioMember")
    fields = _json_member(members)
    meta = scalar_fields(fields, exclude=LABEL_COLUMNS)
    return SourceItem(
        id=item_id, uri=uri, data=members[audio_ext], labels=split_labels(fields.get("labels")),
        human_labels=split_labels(fields.get("human_labels")), meta=meta or None,
    )


def _split_key(name: str) -> tuple[str, str]:
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(directory, stem), ext


def _json_member(members: dict) -> dict:
    for ext, data in members.items():
        if ext.lower().endswith("json"):
            try:
                value = json.loads(data)
                return value if isinstance(value, dict) else {}
            except ValueError:
                return {}
    return {}
