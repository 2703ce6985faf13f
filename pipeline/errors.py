"""Named exceptions raised at the package's boundaries.

The job scripts turn a `UserError` into one line on stderr and exit 1 (no traceback): each one's
message says what is wrong and how to fix it.
"""


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class UserError(PipelineError):
    """A mistake the user can fix (wrong path, flag, credentials, weights); printed as one line."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, truncated, of the wrong variant or has unexpected keys."""


class SourceError(UserError):
    """The source does not exist, cannot be read, or is not a kind of source we know."""


class OutputError(UserError):
    """The output folder cannot be used: not a folder, not writable, held by another run, or made
    with other settings (a resume that would mix corpora)."""


class ConfigError(UserError):
    """Options that cannot work together."""


class AudioInputError(PipelineError, ValueError):
    """An input waveform or sample rate is unusable (empty, non-finite, wrong dtype or shape...)."""


class InputRefused(PipelineError, ValueError):
    """An input refused by a rule of the pipeline's own, proven from the input alone (a path outside
    the data's root): its own failure row, never a fault."""


class Interrupted(PipelineError):
    """The run was interrupted (Ctrl-C); what was committed stays, a rerun resumes."""

    def __init__(self, committed_shards: int) -> None:
        super().__init__(f"interrupted: {committed_shards} shards committed; rerun the same command to resume")
        self.committed_shards = committed_shards
