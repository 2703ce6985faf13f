"""Audio files on any fsspec filesystem: a folder, a prefix, or a glob (`s3://b/p/**.flac`)."""

from __future__ import annotations

from typing import Iterator

from .base import AUDIO_EXTENSIONS, Source, failed_item, fetch_bytes, make_item, protocol_prefix, relative_id

GLOB_CHARS = "*?["


def has_glob(url: str) -> bool:
    return any(ch in url for ch in GLOB_CHARS)


class FilesSource(Source):
    kind = "files"

    def list_units(self) -> list[dict]:
        fs, path = self.filesystem()
        if has_glob(path):
            root = path[: min(path.find(ch) for ch in GLOB_CHARS if ch in path)].rsplit("/", 1)[0]
            paths = [p for p in fs.glob(path) if not fs.isdir(p)]
        else:
            root = path.rstrip("/")
            paths = [p for p in fs.find(root) if p.lower().endswith(AUDIO_EXTENSIONS)]
        prefix = protocol_prefix(fs)
        return [{"id": relative_id(p, root), "uri": prefix + p} for p in sorted(paths)]

    def read_unit(self, unit: dict) -> Iterator[dict]:
        try:
            fs, path = self.filesystem(unit["uri"])
            data = fetch_bytes(fs, path)
        except Exception as error:  # any read problem is recorded against this input
            yield failed_item(unit["id"], unit["uri"], "read", error)
            return
        yield make_item(unit["id"], unit["uri"], data, **{k: v for k, v in unit.items() if k not in ("id", "uri")})
