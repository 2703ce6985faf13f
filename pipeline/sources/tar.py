"""WebDataset-style tar shards (local or any fsspec URL): one audio member per key, optional JSON.

Members are grouped by key (the member path without its extension, as WebDataset does). The item
id is `<shard path relative to the source root>/<key>`; labels come from the JSON member's
`labels` / `human_labels` fields when present.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from typing import Iterator

from .base import AUDIO_EXTENSIONS, Source, failed_item, make_item, protocol_prefix, relative_id
from .files import has_glob
from .manifest import split_labels


class TarSource(Source):
    kind = "tar"
    units_have_ids = False

    def list_units(self) -> list[dict]:
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
        return [{"uri": prefix + p, "shard_id": relative_id(p, root)} for p in sorted(shards)]

    def read_unit(self, unit: dict) -> Iterator[dict]:
        groups: dict[str, dict] = {}
        try:
            fs, path = self.filesystem(unit["uri"])
            with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, ext = _split_key(member.name)
                    groups.setdefault(key, {})[ext] = tar.extractfile(member).read()
        except Exception as error:
            yield failed_item(unit["shard_id"], unit["uri"], "read", error)
            return
        for key, members in groups.items():
            item_id = f"{unit['shard_id']}/{key}"
            audio_ext = next((e for e in members if "." + e.split(".")[-1].lower() in AUDIO_EXTENSIONS), None)
            uri = f"{unit['uri']}#{key}.{audio_ext}" if audio_ext else f"{unit['uri']}#{key}"
            if audio_ext is None:
                yield failed_item(item_id, uri, "read", f"no audio member for key {key!r} (members: {sorted(members)})", "MissingAudioMember")
                continue
            meta = _json_member(members)
            yield make_item(
                item_id, uri, members[audio_ext],
                labels=split_labels(meta.get("labels")), human_labels=split_labels(meta.get("human_labels")),
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
