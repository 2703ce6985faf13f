"""The one rule for every URI that comes from data rather than from the command line.

A dataset reaches only itself. A URI named by data (a manifest row, the `path` of a Parquet row
without bytes, an AudioSet segment's file, a corpus's `uri` column or recorded checkpoint)
resolves on the filesystem of the data that names it, under that data's root:

- a relative path is joined to the folder of the file that names it;
- an absolute path or URL must be on the same filesystem (same scheme: data on S3 never names a
  local file or an http:// URL, a local manifest never an S3 object) and, once `.` and `..` are
  resolved (and, for local paths, symbolic links), lie under the root;
- chained URLs (`tar://m.wav::file:///x.tar`, `simplecache::s3://...`) are never followed.

The user widens it on the command line, never the data: `--allow-uri-prefix PREFIX` (repeatable)
allows every URI under PREFIX (a folder boundary: `s3://b/audio` allows `s3://b/audio/x.wav`, not
`s3://b/audio2/x.wav`), on any filesystem. A URI outside the rule is never opened, listed or
requested: the caller records it (a failure row, an unavailable original) with `UriOutsideRule`'s
message, which names the rule.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, InputRefused

REAL_FOLDERS_KEPT = 4096  # folders whose resolved path a rule keeps (`UriRule._real_path`)

ALLOW_FLAG = "--allow-uri-prefix"
RULE_NAME = "the URI rule"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_ALIASES = {"s3a": "s3", "local": "file", "gcs": "gs"}  # one filesystem, two names
_WEB = ("http", "https")


class UriOutsideRule(InputRefused):
    """A URI from data that the rule does not allow; the message says why and how to widen it."""


@dataclass(frozen=True, slots=True)
class Location:
    """A place on one filesystem: a canonical scheme and a normalised path (local: absolute, with
    symbolic links resolved; object stores: `bucket/key`; web: `host[:port]/path`)."""

    scheme: str
    path: str

    def under(self, folder: Location) -> bool:
        if self.scheme != folder.scheme:
            return False
        top = folder.path.rstrip("/")
        return top == "" or self.path == top or self.path.startswith(top + "/")

    def display(self) -> str:
        return self.path if self.scheme == "file" else f"{self.scheme}://{self.path}"


def scheme_of(uri: str) -> str | None:
    match = _SCHEME.match(uri)
    return _ALIASES.get(match.group(1).lower(), match.group(1).lower()) if match else None


def command_line_location(url: str, *, resolve_links: bool = True) -> Location:
    """Where a URL or path given on the command line points (relative local paths from the
    working directory); a chained URL is a ConfigError."""
    if "::" in url:
        raise ConfigError(f"{url}: chained URLs cannot name a data root or an allowed prefix")
    scheme = scheme_of(url) or "file"
    if scheme == "file":
        path = os.path.abspath(os.path.expanduser(url[len("file://"):] if "://" in url else url))
        return Location("file", os.path.realpath(path) if resolve_links else path)
    return Location(scheme, _remote_path(scheme, url[url.index("://") + 3:]))


def _remote_path(scheme: str, rest: str) -> str:
    if scheme in _WEB:
        parts = urlsplit(f"{scheme}://{rest}")
        return parts.netloc.lower() + posixpath.normpath("/" + unquote(parts.path).lstrip("/")).rstrip("/")
    return posixpath.normpath("/" + rest).strip("/")


@dataclass(frozen=True)
class UriRule:
    """What data found at `base` may name: URIs under `root` (default: `base`) on its filesystem,
    or under an allowed prefix. `what` names the data in messages ("the manifest's folder")."""

    base: str
    root: str | None = None
    allowed_prefixes: tuple[str, ...] = ()
    what: str = "the source"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_base", command_line_location(self.base, resolve_links=False))
        object.__setattr__(self, "_root", command_line_location(self.root or self.base))
        object.__setattr__(self, "_allowed", tuple(allowed_locations(self.allowed_prefixes)))
        object.__setattr__(self, "_real_folders", {})

    def resolve(self, raw: object) -> str:
        """The URI to read for `raw` (a string from data), or UriOutsideRule."""
        if not isinstance(raw, str) or not raw.strip():
            raise self._outside(raw, "is not a path")
        if "::" in raw:
            raise self._outside(raw, "is a chained URL")
        try:
            location, uri = self._locate(raw)
        except (ValueError, OSError) as error:  # a NUL byte, an unparsable URL
            raise self._outside(raw, f"cannot be resolved ({error})") from None
        if location.under(self._root) or any(location.under(prefix) for prefix in self._allowed):
            return uri
        if location.scheme != self._root.scheme:
            raise self._outside(raw, f"is on another filesystem ({location.scheme}://, this data is on "
                                     f"{self._root.scheme}://)")
        raise self._outside(raw, f"is outside {self._root.display()}")

    def allows(self, raw: object) -> bool:
        try:
            self.resolve(raw)
        except UriOutsideRule:
            return False
        return True

    def _locate(self, raw: str) -> tuple[Location, str]:
        scheme = scheme_of(raw)
        if scheme is None and not raw.startswith("/"):  # relative: from the folder of the data
            return self._join(raw)
        if scheme in (None, "file"):
            path = raw[len("file://"):] if scheme else raw
            if not path.startswith("/"):
                raise ValueError("a file:// URL needs an absolute path")
            normal = posixpath.normpath(path)
            return Location("file", self._real_path(normal)), normal
        rest = raw[raw.index("://") + 3:]
        path = _remote_path(scheme, rest)
        if scheme in _WEB:
            return Location(scheme, path), raw
        return Location(scheme, path), f"{scheme}://{path}"

    def _join(self, relative: str) -> tuple[Location, str]:
        base = self._base
        if base.scheme == "file":
            normal = posixpath.normpath(posixpath.join(base.path, relative))
            return Location("file", self._real_path(normal)), normal
        if base.scheme in _WEB:
            host, _, folder = base.path.partition("/")
            uri = f"{base.scheme}://{host}{posixpath.normpath(posixpath.join('/' + folder, relative))}"
            return Location(base.scheme, _remote_path(base.scheme, uri.split("://", 1)[1])), uri
        path = posixpath.normpath(posixpath.join("/" + base.path, relative)).strip("/")
        return Location(base.scheme, path), f"{base.scheme}://{path}"

    def _real_path(self, path: str) -> str:
        """`os.path.realpath` of a normalised absolute path, with its folder's resolution kept: a
        manifest of a million rows in a few folders costs one `lstat` a row, not one per component."""
        if "\x00" in path:  # (os.path.islink says False where realpath raises)
            raise ValueError("embedded null byte")
        folder, _, name = path.rpartition("/")
        folder = folder or "/"
        real_folder = self._real_folders.get(folder)
        if real_folder is None:
            if len(self._real_folders) >= REAL_FOLDERS_KEPT:
                self._real_folders.clear()
            real_folder = self._real_folders[folder] = os.path.realpath(folder)
        joined = f"{real_folder.rstrip('/')}/{name}" if name else real_folder
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def _outside(self, raw: object, why: str) -> UriOutsideRule:
        shown = repr(raw[:300]) if isinstance(raw, str) else repr(raw)[:300]
        return UriOutsideRule(
            f"{shown} {why}: data may name only files under {self.what} {self._root.display()} on its own "
            f"filesystem ({RULE_NAME}); to read it, widen the rule with {ALLOW_FLAG} <folder or URL prefix>")


def allowed_locations(prefixes) -> list[Location]:
    """The `--allow-uri-prefix` values as locations; an empty or chained one is a ConfigError."""
    out = []
    for prefix in prefixes or ():
        if not isinstance(prefix, str) or not prefix.strip():
            raise ConfigError(f"{ALLOW_FLAG} needs a folder or URL prefix, got {prefix!r}")
        out.append(command_line_location(prefix))
    return out


def folder_of(url: str) -> str:
    """The folder holding a file URL or path, as a URL or path of the same kind."""
    head, slash, _ = url.rstrip("/").rpartition("/")
    return (head or "/") if slash else "."
