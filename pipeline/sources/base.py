"""What every source shares: the unit of work, the read contract, retries and user-error mapping.

A source lists `WorkUnit`s on the driver (cheap: no audio is read) and reads each unit into
`SourceItem`s inside Ray tasks. A unit is either one input (`unit.item` holds its id and known
fields, so the runner can skip a completed input before reading it) or a container (a tar shard,
a Parquet file: `unit.item is None`, its inputs are known only once it is read). Whatever cannot
be read becomes a `SourceItem` whose `.failure` says why, so nothing is dropped.

Read failures (the bytes could not be fetched) are `retryable`: transient ones (connection,
timeout, throttling) are retried here `read_retries` times with a short backoff; the failure a
run finally records is tried again by the next run. Content problems are not retryable.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

from ..errors import SourceError
from ..records import STAGE_READ, Failure, SourceItem
from .uri_rule import UriRule

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".w64",
                    ".caf",  # libsndfile; then through FFmpeg:
                    ".m4a", ".aac", ".mp4", ".webm", ".mka", ".wma", ".wv", ".ac3")
DEFAULT_READ_RETRIES = 3
MissingInputs = Literal["retry", "fail"]  # an input that does not exist: retryable, or a final failure
DedupePolicy = Literal["refuse", "first"]  # an id seen twice: refused, or the first one kept
RETRY_BACKOFF_S = 0.5  # first wait; doubled on each further attempt

T = TypeVar("T")


@dataclass(slots=True)
class WorkUnit:
    """One thing to read: a single input (`item` set, without data) or a container (`item` None)."""

    key: str  # stable across runs: the input id for a single input, the relative path of a container
    uri: str
    item: SourceItem | None = None
    # a container's rows whose id an earlier row of the source already holds: position -> that row's place
    duplicates: dict[int, str] | None = None

    @property
    def is_container(self) -> bool:
        return self.item is None


def single_unit(item: SourceItem) -> WorkUnit:
    return WorkUnit(key=item.id, uri=item.uri, item=item)


def failed_item(id: str, uri: str, stage: str, error: BaseException | str, error_type: str | None = None,
                retryable: bool = False) -> SourceItem:
    failure = Failure.from_error(id, uri, stage, error, error_type=error_type, retryable=retryable)
    return SourceItem(id=id, uri=uri, failure=failure)


def read_failure(id: str, uri: str, error: BaseException) -> SourceItem:
    """The item for bytes that could not be fetched: retryable when the cause may pass."""
    return failed_item(id, uri, STAGE_READ, error, retryable=is_transient(error))


@dataclass
class Source:
    """Base class: subclasses implement `_list_units` and `read_unit`."""

    url: str
    storage_options: dict = field(default_factory=dict)
    read_retries: int = DEFAULT_READ_RETRIES  # attempts per fetch before a retryable failure is recorded
    missing_inputs: MissingInputs = "retry"  # a missing input: "retry" (retryable) or "fail" (final)
    dedupe: DedupePolicy = "refuse"  # an id seen twice: "refuse" (a failure row for the later one) or "first"
    allow_uri_prefixes: tuple[str, ...] = ()  # where URIs named by data may point besides the source's root

    kind = "base"

    def list_units(self) -> list[WorkUnit]:
        """Every unit of the source, in a stable order; a user's mistake is a `SourceError`."""
        with user_errors(self.url):
            return list(self.iter_units())

    def remember_listing(self, found: list[str]) -> None:
        """The files `open_source` found at the source's URL while telling its kind: its listing uses
        them instead of a second pass over the store (once; they never travel to Ray tasks)."""
        self._found = found

    def found_files(self) -> list[str] | None:
        """The files `remember_listing` kept, handed over once."""
        return self.__dict__.pop("_found", None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_found", None)
        return state

    def iter_units(self) -> Iterator[WorkUnit]:
        """The units, as the listing finds them (sources that list row by row stream them); the
        caller maps user errors (`user_errors`). `work_list.list_work` keeps them as columns."""
        return iter(self._list_units())

    def work_tables(self) -> Iterator[pa.Table] | None:
        """The units as tables of `work_list.WORK_SCHEMA`, for a source that lists in columns; None
        for one that lists unit by unit (`iter_units`)."""
        return None

    def _list_units(self) -> list[WorkUnit]:
        raise NotImplementedError

    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        raise NotImplementedError

    def uri_rule(self, base: str, root: str | None = None, what: str = "the source") -> UriRule:
        """The rule for URIs this source's data names (`uri_rule.py`): relative ones from `base`,
        every one under `root` (default `base`) or an allowed prefix."""
        return UriRule(base, root, tuple(self.allow_uri_prefixes), what)

    def filesystem(self, url: str | None = None):
        """storage_options are per protocol: {"s3": {"endpoint_url": ...}}."""
        from ..fsutil import url_to_fs

        return url_to_fs(url or self.url, self.storage_options)

    def read_failure(self, id: str, uri: str, error: BaseException) -> SourceItem:
        """`read_failure`, with this source's rule for inputs that do not exist."""
        if self.missing_inputs == "fail" and isinstance(error, FileNotFoundError):
            return failed_item(id, uri, STAGE_READ, error)
        return read_failure(id, uri, error)

    def with_retries(self, fetch: Callable[[], T]) -> T:
        return with_retries(fetch, self.read_retries)

    def fetch(self, uri: str) -> bytes:
        """The bytes at `uri`, with retries; raises the last error."""
        def once() -> bytes:
            fs, path = self.filesystem(uri)
            with fs.open(path, "rb") as handle:
                return handle.read()

        return self.with_retries(once)


# --- transient errors and retries ------------------------------------------------------------------

# Errors worth another attempt in a later run but not within seconds: the object is missing or
# forbidden now (deleted then restored, a wrong or expired credential).
_NOT_RETRIED_NOW = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_NAMES = {"ClientError", "BotoCoreError", "NoCredentialsError", "EndpointConnectionError",
                    "ConnectTimeoutError", "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError",
                    "ClientPayloadError", "HfHubHTTPError", "HTTPError", "IncompleteRead"}


def is_transient(error: BaseException) -> bool:
    """I/O, network and credential errors: the input may read fine later (a failure to retry).
    Format errors (a cut tar, a Parquet file that is not one) are not."""
    return isinstance(error, (OSError, TimeoutError)) or any(
        cls.__name__ in _TRANSIENT_NAMES for cls in type(error).__mro__)


def with_retries(fetch: Callable[[], T], attempts: int, backoff_s: float | None = None) -> T:
    """`fetch()`, tried up to `attempts` times while it fails with an error that may pass in seconds
    (waiting `backoff_s`, default RETRY_BACKOFF_S, doubled after each attempt)."""
    backoff_s = RETRY_BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return fetch()
        except Exception as error:
            if attempt >= attempts or not is_transient(error) or isinstance(error, _NOT_RETRIED_NOW) \
                    or type(error).__name__ == "NoCredentialsError":
                raise
            wait = backoff_s * 2 ** (attempt - 1)
            log.info("read attempt %d/%d failed (%s: %s); retrying in %.1f s",
                     attempt, attempts, type(error).__name__, error, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


# --- user errors -------------------------------------------------------------------------------------

def _caused_by(error: BaseException, name: str) -> bool:
    seen = error
    while seen is not None:
        if any(cls.__name__ == name for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def as_source_error(url: str, error: BaseException) -> SourceError | None:
    """The one-line SourceError for a mistake the user can fix, None for anything else."""
    if isinstance(error, SourceError):
        return error
    if _caused_by(error, "NoCredentialsError"):
        return SourceError(f"no AWS credentials found for {url}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                           "or --aws-profile (or --s3-anon for a public bucket)")
    if isinstance(error, FileNotFoundError):
        return SourceError(f"source {url} does not exist ({error})")
    if isinstance(error, PermissionError):
        return SourceError(f"source {url} cannot be read: permission denied ({error})")
    if isinstance(error, OSError):
        return SourceError(f"source {url} cannot be listed: {type(error).__name__}: {error}")
    return None


@contextlib.contextmanager
def user_errors(url: str):
    """Turn credential, permission and existence errors into one-line `SourceError`s."""
    try:
        yield
    except Exception as error:
        mapped = as_source_error(url, error)
        if mapped is None or mapped is error:
            raise
        raise mapped from error
