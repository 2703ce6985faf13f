"""Named exceptions raised at the package's boundaries."""


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(PipelineError):
    """A checkpoint is missing, unreadable, truncated, of the wrong variant or has unexpected keys."""


class AudioInputError(PipelineError, ValueError):
    """An input waveform or sample rate is unusable (empty, non-finite, wrong dtype or shape...)."""
