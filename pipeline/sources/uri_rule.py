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
import stat
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, InputRefused

REAL_FOLDERS_KEPT = 4096  # folders whose resolved path a rule keeps (`UriRule._real_path`, `resolve_plain`)
LSTATS_BEFORE_SCAN = 256  # `resolve_plain`: links in a folder found by `lstat` this often, then by listing it once

ALLOW_FLAG = "--allow-uri-prefix"
RULE_NAME = "the URI rule"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_ALIASES = {"s3a": "s3", "local": "file", "gcs": "gs"}  # one filesystem, two names
_WEB = ("http", "https")
# A plain path: components of at least one character, the first a letter, digit or `_` (so the path
# is no blank string, `.` or `..`), the others without `/` or NUL; `/.`, `/..` components, `::` and
# `://` are screened out separately (RE2 has no lookahead).
_PLAIN_RELATIVE = r"^[\p{L}\p{N}_][^/\x00]*(?:/[^/\x00]+)*$"
_PLAIN_ABSOLUTE = r"^/[\p{L}\p{N}_][^/\x00]*(?:/[^/\x00]+)*$"
_DOT_COMPONENT = r"/\.\.?(?:/|$)"


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
        object.__setattr__(self, "_plain_folders", {})

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
        if self._allows(location):
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
        real_folder = self._real_folder(folder or "/")
        joined = f"{real_folder.rstrip('/')}/{name}" if name else real_folder
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def _real_folder(self, folder: str) -> str:
        """`os.path.realpath` of a folder, kept for the next path in it."""
        real = self._real_folders.get(folder)
        if real is None:
            if len(self._real_folders) >= REAL_FOLDERS_KEPT:
                self._real_folders.clear()
            real = self._real_folders[folder] = os.path.realpath(folder)
        return real

    def resolve_plain(self, raws: pa.Array) -> pa.Array:
        """`resolve` for a column of URIs at once, where it needs none of its general rules: for a
        plain path (relative, or absolute on a local filesystem; no empty, `.` or `..` component, no
        URL, no NUL, the first character a letter, digit or `_`) whose folder lies under the rule,
        and, on a local filesystem, whose last component is no symbolic link, its URI, as `resolve`
        gives it. Null for every other value: `resolve` tells those (allowed, or UriOutsideRule)."""
        base = self._base
        if base.scheme in _WEB:
            return pa.nulls(len(raws), pa.string())
        local = base.scheme == "file"
        raws = raws.cast(pa.string())
        relative = pc.match_substring_regex(raws, _PLAIN_RELATIVE)
        plain = pc.or_(relative, pc.match_substring_regex(raws, _PLAIN_ABSOLUTE)) if local else relative
        plain = pc.and_(plain, pc.invert(pc.or_(pc.or_(pc.match_substring_regex(raws, _DOT_COMPONENT),
                                                       pc.match_substring(raws, "::")),
                                                pc.match_substring(raws, "://"))))
        prefix = f"{base.path.rstrip('/')}/" if local else (f"{base.path}/" if base.path else "")
        joined = pc.binary_join_element_wise(prefix, raws, "")
        paths = pc.if_else(pc.fill_null(plain, False), pc.if_else(relative, joined, raws), None)
        uris = []
        for path in paths.to_pylist():
            if path is None:
                uris.append(None)
                continue
            folder, _, name = path.rpartition("/")
            state = self._plain_folders.get(folder)
            if state is None:
                if len(self._plain_folders) >= REAL_FOLDERS_KEPT:
                    self._plain_folders.clear()
                state = self._plain_folders[folder] = self._plain_folder(folder)
            if state.real_prefix is None or (local and state.is_link(name)):
                uris.append(None)
            else:
                uris.append(path if local else f"{base.scheme}://{path}")
        return pa.array(uris, pa.string())

    def _plain_folder(self, folder: str) -> _PlainFolder:
        """What `resolve_plain` keeps of a folder whose files it resolves (a folder not under the rule
        has no `real_prefix`: its files go to `resolve`, which also knows a file that is the root)."""
        scheme = self._base.scheme
        if scheme != "file":
            return _PlainFolder("" if self._allows(Location(scheme, folder)) else None)
        real = self._real_folder(folder or "/")
        return _PlainFolder(f"{real.rstrip('/')}/" if self._allows(Location("file", real)) else None)

    def _allows(self, location: Location) -> bool:
        return location.under(self._root) or any(location.under(prefix) for prefix in self._allowed)

    def _outside(self, raw: object, why: str) -> UriOutsideRule:
        shown = repr(raw[:300]) if isinstance(raw, str) else repr(raw)[:300]
        return UriOutsideRule(
            f"{shown} {why}: data may name only files under {self.what} {self._root.display()} on its own "
            f"filesystem ({RULE_NAME}); to read it, widen the rule with {ALLOW_FLAG} <folder or URL prefix>")


class _PlainFolder:
    """A folder under the rule, as `resolve_plain` keeps it: its resolved path, and which of its
    entries are symbolic links (found by `lstat` for its first `LSTATS_BEFORE_SCAN` names, then by
    listing the folder once: one `lstat` costs about as much as listing six entries)."""

    __slots__ = ("real_prefix", "lstats", "links")

    def __init__(self, real_prefix: str | None) -> None:
        self.real_prefix = real_prefix
        self.lstats = 0
        self.links: frozenset[str] | None = None

    def is_link(self, name: str) -> bool:
        if self.links is not None:
            return name in self.links
        self.lstats += 1
        if self.lstats == LSTATS_BEFORE_SCAN:  # (once: a folder that cannot be listed keeps `lstat`)
            self.links = _link_names(self.real_prefix)
            if self.links is not None:
                return name in self.links
        try:
            return stat.S_ISLNK(os.lstat(self.real_prefix + name).st_mode)
        except (OSError, ValueError):
            return False


def _link_names(folder: str) -> frozenset[str] | None:
    """The names of the symbolic links in `folder` (none where it does not exist or is no folder),
    or None where it cannot be listed (`lstat` still answers there)."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(entry.name for entry in entries if entry.is_symlink())
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    except OSError:
        return None


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
