"""Keep a CMB point list's records, colours and linked table in step with its points.

Points change outside the module too: the Markups module deletes, moves, renames or adds them,
and the views place new ones. :class:`ReviewSync` observes the fiducial node and after every
change

- stamps a point that appeared (and is placed) without a record as an accepted reader point,
- on a review list (a node with records; any other point list keeps its display): drops
  records of deleted points, refreshes the others' fingerprints, recomputes the voxel (I, J, K)
  of a moved point and restores each point's colour from its status (the Markups module can
  toggle "selected"),
- rebuilds the linked table (``markups.TABLE_ROLE``) and counts table (``readout.COUNTS_ROLE``)
  and calls ``changed()``.

Its own edits raise point events again; they are ignored while a sync runs, so it never recurses.
While a point is dragged or placed in a view, edits wait for the drop, the click or the preview
point's removal (one update, not one per mouse move).
"""

from __future__ import annotations

from collections.abc import Callable

import slicer
import vtk

from . import markups, point_records, readout, tables, volumes

MARKUPS = slicer.vtkMRMLMarkupsNode
EDIT_EVENTS = (MARKUPS.PointModifiedEvent, vtk.vtkCommand.ModifiedEvent)  # many per second while dragging


def linked_ijk(node, ras) -> tuple[float, float, float] | None:
    """Voxel index of world ``ras`` in the node's input volume (``markups.VOLUME_ROLE``), if linked."""
    volume = node.GetNodeReference(markups.VOLUME_ROLE)
    if volume is None:
        return None
    return tuple(float(v) for v in volumes.world_geometry(volume).ras_to_ijk_points(ras)[0])


def _world_ras(node, index: int) -> list[float]:
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(index, ras)
    return ras


class ReviewSync:
    """Observes ``node`` until :meth:`stop`; points present at the start are never stamped.

    A node written by an earlier version (records in point descriptions) is migrated first.
    """

    def __init__(self, node, changed: Callable[[], None] | None = None) -> None:
        self.node = node
        self._changed = changed
        self._busy = False
        self._dragging = False
        point_records.migrate(node)
        self._known = self._placed_ids()
        self._tags = [node.AddObserver(event, self._on_edit) for event in EDIT_EVENTS] + [
            node.AddObserver(MARKUPS.PointAddedEvent, self._on_end),
            node.AddObserver(MARKUPS.PointRemovedEvent, self._on_end),
            node.AddObserver(MARKUPS.PointStartInteractionEvent, self._on_drag_start),
            node.AddObserver(MARKUPS.PointEndInteractionEvent, self._on_end)]
        self.sync()

    def stop(self) -> None:
        for tag in self._tags:
            self.node.RemoveObserver(tag)
        self._tags = []

    def _placed_ids(self) -> set[str]:
        node = self.node
        return {node.GetNthControlPointID(i) for i in range(node.GetNumberOfControlPoints())
                if node.GetNthControlPointPositionStatus(i) == MARKUPS.PositionDefined}

    def _on_edit(self, caller, event) -> None:
        if not self._dragging and not self._placing():
            self.sync()

    def _placing(self) -> bool:
        """A preview point follows the mouse (place mode): it moves at every mouse move."""
        node = self.node
        return any(node.GetNthControlPointPositionStatus(i) == MARKUPS.PositionPreview
                   for i in range(node.GetNumberOfControlPoints()))

    def _on_drag_start(self, caller, event) -> None:
        self._dragging = True

    def _on_end(self, caller, event) -> None:
        """A point was dropped, added or deleted: sync now (also ends a drag whose end got lost)."""
        self._dragging = False
        self.sync()

    def sync(self) -> None:
        """Bring records, colours and the linked table up to date with the points."""
        if self._busy:
            return
        self._busy = True
        try:
            self._stamp_new_points()
            if point_records.has_store(self.node):
                self._update_records()
                self._restore_colours()
            table = self.node.GetNodeReference(markups.TABLE_ROLE)
            if table is not None:
                tables.update_table(table, self.node)
            readout.refresh_counts_table(self.node)
        finally:
            self._busy = False
        if self._changed is not None:
            self._changed()

    def _stamp_new_points(self) -> None:
        node, placed = self.node, self._placed_ids()
        new = placed - self._known
        self._known = placed
        if not new:
            return
        records = point_records.records_by_index(node)
        for i in range(node.GetNumberOfControlPoints()):
            if node.GetNthControlPointID(i) in new and records[i] is None:
                markups.mark_reader_point(node, i, ijk=linked_ijk(node, _world_ras(node, i)))

    def _update_records(self) -> None:
        """New voxel for moved points; drops records of deleted points, refreshes fingerprints."""
        node = self.node
        point_records.update_records(node, {i: {"ijk": _rounded(linked_ijk(node, _world_ras(node, i)))}
                                            for i in point_records.moved(node)})

    def _restore_colours(self) -> None:
        for p in markups.points(self.node):
            if self.node.GetNthControlPointSelected(p.index) != (p.status == markups.PENDING):
                self.node.SetNthControlPointSelected(p.index, p.status == markups.PENDING)


def _rounded(ijk):
    return None if ijk is None else [round(v, 3) for v in ijk]
