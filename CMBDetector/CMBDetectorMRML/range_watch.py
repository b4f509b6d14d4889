"""Whether the panel's input volume lies outside the training ranges, kept current without
re-reading sidecars and the DICOM database on every change of the node."""

from __future__ import annotations

from collections.abc import Callable

import vtk


def _key(node) -> tuple:
    """What the answer depends on: the node's attributes (acquisition metadata, DICOM UIDs), its
    grid and the file it was loaded from."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    storage = node.GetStorageNode()
    return (tuple(sorted((name, node.GetAttribute(name)) for name in node.GetAttributeNames())),
            tuple(matrix.GetElement(r, c) for r in range(4) for c in range(4)),
            storage.GetFileName() if storage is not None else None)


class TrainingRangeWatch:
    """Follows one volume node: asks ``read(node)`` (e.g. ``CMBDetectorLogic.outsideTrainingRanges``)
    when the node is followed and again only when its attributes, grid or file change, and calls
    ``changed(out_of_range)`` whenever the answer is read."""

    def __init__(self, read: Callable[[object], bool], changed: Callable[[bool], None]):
        self._read, self._changed = read, changed
        self._node, self._tag, self._key = None, None, None
        self.out_of_range = False

    def follow(self, node) -> None:
        """Watch ``node`` (None: nothing selected, in range) instead of the previous one."""
        self.stop()
        self._node = node
        if node is not None:
            self._tag = node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._onModified)
        self._update()

    def stop(self) -> None:
        """Stop observing; the last answer stays in ``out_of_range``."""
        if self._node is not None and self._tag is not None:
            self._node.RemoveObserver(self._tag)
        self._node, self._tag, self._key = None, None, None

    def _onModified(self, caller=None, event=None) -> None:
        self._update()

    def _update(self) -> None:
        key = None if self._node is None else _key(self._node)
        if self._node is not None and key == self._key:
            return
        self._key = key
        self.out_of_range = self._node is not None and bool(self._read(self._node))
        self._changed(self.out_of_range)
