"""Upload a token output to a Hugging Face dataset repo: committed shards, the run record, card.

    python -m pipeline.output.hub_push OUT owner/name [--private]

Only committed data goes up (`PUSH_PATTERNS`): tokens/ and failures/ shards, the run record
(`manifest.json`) and README.md, the dataset card, generated for this repo at push time. Files
being written (_tmp/), the writer lease, the run fingerprint, retryable/ (transient failures the
next run retries) and anything else stay behind. The token comes from `token=`, $HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import argparse
import sys

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects

try:  # the transport's errors (connection refused, DNS, timeouts): httpx-based clients export them here
    from huggingface_hub.errors import HTTPError
except ImportError:  # requests-based clients (huggingface_hub < 1.0)
    from requests import RequestException as HTTPError

from ..errors import UserError
from ..redaction import terminal_line
from .dataset_card import CARD_FILE, dataset_card
from .folder import FAILURES_DIR, RUN_RECORD_FILE, TOKENS_DIR, OutputFolder

PUSH_PATTERNS = [f"{TOKENS_DIR}/part-*.parquet", f"{FAILURES_DIR}/part-*.parquet", RUN_RECORD_FILE, CARD_FILE]
IGNORE_PATTERNS = ["_*", "*/_*", ".*", "*/.*"]  # never data: _tmp/, _lease.json, _fingerprint.json, .cache/
FILES_PER_COMMIT = 1000
BYTES_PER_COMMIT = 1 << 30  # remote shards are read into memory one commit at a time


class HubError(UserError):
    """The output cannot be pushed: no token, token rejected, repo unreachable or not writable."""


def files_to_push(output: OutputFolder | str, storage_options: dict | None = None) -> list[str]:
    """The repo paths an upload of this output holds, sorted. README.md is always among them: the
    card is generated at push time."""
    output = output if isinstance(output, OutputFolder) else OutputFolder(output, storage_options)
    return sorted(set(_committed_sizes(output)) | {CARD_FILE})


def _committed_sizes(output: OutputFolder) -> dict[str, int]:
    """{repo path: bytes} of the output's files that `PUSH_PATTERNS` select."""
    sizes = output.files()
    return {name: sizes[name] for name in
            filter_repo_objects(sizes, allow_patterns=PUSH_PATTERNS, ignore_patterns=IGNORE_PATTERNS)}


def commit_batches(sizes: dict[str, int]) -> list[list[str]]:
    """Files in commits of at most FILES_PER_COMMIT files and BYTES_PER_COMMIT bytes (one file over
    the byte budget goes alone); at least one (possibly empty) batch for the card."""
    batches: list[list[str]] = [[]]
    held = 0
    for name in sorted(sizes):
        if batches[-1] and (len(batches[-1]) >= FILES_PER_COMMIT or held + sizes[name] > BYTES_PER_COMMIT):
            batches.append([])
            held = 0
        batches[-1].append(name)
        held += sizes[name]
    return batches


def push_to_hub(output_url: str, repo_id: str, *, token: str | None = None, private: bool | None = None,
                storage_options: dict | None = None, endpoint: str | None = None) -> str:
    """Create the dataset repo if needed and upload the output; returns the repo's URL.
    `endpoint`: another Hub (default $HF_ENDPOINT or huggingface.co)."""
    output = OutputFolder(output_url, storage_options)
    sizes = _committed_sizes(output)
    if not any(name.startswith(f"{TOKENS_DIR}/") for name in sizes):
        raise HubError(f"nothing to push: no committed token shards under {output_url}/{TOKENS_DIR}")
    token = token or get_token()
    if not token:
        raise HubError(f"no Hugging Face token to push to {repo_id}: run `hf auth login` or set HF_TOKEN")
    api = HfApi(endpoint=endpoint, token=token)
    card = dataset_card(output, repo_id).encode()
    batches = commit_batches({name: size for name, size in sizes.items() if name != CARD_FILE})
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        for number, batch in enumerate(batches, 1):
            operations = [CommitOperationAdd(name, _content(output, name)) for name in batch]
            if number == len(batches):  # the card last: it describes the complete upload
                operations.append(CommitOperationAdd(CARD_FILE, card))
            api.create_commit(repo_id, operations, repo_type="dataset",
                              commit_message=f"Add token output ({number}/{len(batches)})")
    except (HfHubHTTPError, HTTPError, OfflineModeIsEnabled, HFValidationError, OSError) as error:
        reason = " ".join(_reason(error).split())
        raise HubError(f"cannot push to Hugging Face dataset repo {repo_id}: {reason}") from error
    return str(url)


def _content(output: OutputFolder, name: str):
    """A local file as its path (uploaded from disk), a remote one as its bytes."""
    return output.path(name) if output.is_local else output.fs.cat_file(output.path(name))


def _reason(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        return "the token was rejected (401); check HF_TOKEN or run `hf auth login`"
    if status == 403:
        return "this token may not write to it (403); use a token with write access to the repo or its owner"
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set; unset it to push"
    if isinstance(error, HTTPError) and not isinstance(error, HfHubHTTPError):
        return f"the Hub is not reachable ({error}); check the network or HF_ENDPOINT"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def main(argv=None) -> int:
    cli = argparse.ArgumentParser(prog="python -m pipeline.output.hub_push", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("output", help="token output folder (local or fsspec URL)")
    cli.add_argument("repo_id", help="Hugging Face dataset repo, owner/name (created if missing)")
    cli.add_argument("--private", action="store_true", default=None, help="create the repo private")
    args = cli.parse_args(argv)
    try:
        print(push_to_hub(args.output, args.repo_id, private=args.private))
    except UserError as error:
        print(terminal_line(f"error: {error}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
