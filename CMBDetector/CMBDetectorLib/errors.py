"""The project's own error type: every expected failure is raised as this, with a message
that names the problem and what to do about it."""


class CMBDetectorError(ValueError):
    """Bad input, missing weights or an unusable configuration (message is user-facing)."""
