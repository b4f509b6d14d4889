"""Progress reporting and cooperative cancellation between pipeline stages."""

from __future__ import annotations

from collections.abc import Callable

from .errors import CMBDetectorError

ProgressCallback = Callable[[str, float], None]
CancelCheck = Callable[[], bool]


class DetectionCancelled(CMBDetectorError):
    """Raised between stages when the caller asked to cancel."""


class StageReporter:
    """Calls ``progress(stage, fraction)`` and raises :class:`DetectionCancelled` on request."""

    def __init__(self, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None):
        self._progress = progress
        self._cancel = cancel

    def __call__(self, stage: str, fraction: float) -> None:
        if self._cancel is not None and self._cancel():
            raise DetectionCancelled(f"Cancelled by the user before '{stage}'.")
        if self._progress is not None:
            self._progress(stage, fraction)
