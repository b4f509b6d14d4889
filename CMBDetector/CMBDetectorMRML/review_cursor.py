"""The point under review: tracked by control point ID, stepped through, highlighted in the views.

Following the ID (not the index) keeps the cursor on the same microbleed when points before it
are deleted. The current point is the display node's *active* control point, which the views
draw in :data:`CURRENT_COLOR` (the Markups hover highlight) while it stays selected in the panel.
"""

from __future__ import annotations

from . import markups

CURRENT_COLOR = (0.0, 0.75, 1.0)


class ReviewCursor:
    """Current point of ``node``; ``index`` is -1 when there is none (or it was deleted)."""

    def __init__(self, node) -> None:
        self.node = node
        self._id: str | None = None
        self._last_index = -1  # where the current point was last seen: stepping goes on from there

    @property
    def index(self) -> int:
        index = -1 if self._id is None else self.node.GetNthControlPointIndexByID(self._id)
        if index >= 0:
            self._last_index = index
        return index

    def go_to(self, index: int) -> None:
        """Make point ``index`` current (-1: none) and highlight it."""
        valid = 0 <= index < self.node.GetNumberOfControlPoints()
        self._id = self.node.GetNthControlPointID(index) if valid else None
        self._last_index = index if valid else -1
        self.highlight()

    def order(self, pending_only: bool = False) -> list[int]:
        """Indices to step through: every point, or only pending ones."""
        return [p.index for p in markups.points(self.node) if not pending_only or p.status == markups.PENDING]

    def step(self, direction: int, pending_only: bool = False) -> int:
        """Move to the next (+1) or previous (-1) point in :meth:`order`, wrapping; returns the index."""
        order, current = self.order(pending_only), self.index
        if not order:
            target = -1
        elif current in order:
            target = order[(order.index(current) + direction) % len(order)]
        else:  # nothing current yet, the current point was filtered out or deleted
            here = current if current >= 0 else self._last_index - (1 if direction > 0 else 0)
            ahead = [i for i in order if (i - here) * direction > 0]
            target = ahead[0 if direction > 0 else -1] if ahead else order[0 if direction > 0 else -1]
        self.go_to(target)
        return target

    def highlight(self) -> None:
        """Draw the current point in :data:`CURRENT_COLOR` (the display node's active point)."""
        display = self.node.GetDisplayNode()
        if display is None:
            return
        display.SetActiveColor(*CURRENT_COLOR)
        if self.index >= 0:
            display.SetActiveControlPoint(self.index)
        else:
            display.SetActiveComponent(display.ComponentNone, -1)
