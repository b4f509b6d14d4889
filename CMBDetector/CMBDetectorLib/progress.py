"""Progress reporting and cooperative cancellation between pipeline stages."""

from __future__ import annotations

from collections.abc import Callable

from .errors import CMBDetectorError

ProgressCallback = Callable[[str, float], None]
CancelCheck = Callable[[], bool]
FractionCallback = Callable[[float], None]  # progress within one stage, 0-1


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

    def within(self, stage: str, start: float, end: float) -> FractionCallback:
        """A callback for progress inside ``stage``: its 0-1 fraction maps onto ``start``-``end``
        (and a cancel request raises there, between batches)."""
        return lambda fraction: self(stage, start + (end - start) * min(max(fraction, 0.0), 1.0))
