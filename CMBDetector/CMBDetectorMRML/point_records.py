"""Per-point records of a markups node, keyed by control point ID, out of the user's way.

The records live as JSON ``{"cmbdetector": 2, "points": {<control point ID>: {field: value}}}``
in the *description* of a ``vtkMRMLStaticMeasurement`` named :data:`MEASUREMENT_NAME` on the node.
Slicer writes measurements into .mrk.json (and so into .mrb scenes) and reads them back, but the
Markups module shows no editable field for a measurement's description: editing a point's
label or description there changes no record. A record is generic (any JSON-able fields); the
review (:mod:`.markups`) keeps status, source, scores, size, location and voxel there.

Control point IDs can be reused after points are deleted, so each record also holds the label
and position its point had when last written (``_label``, ``_xyz``). A record whose point has
the same ID but neither that label nor that position belongs to a deleted point: it is ignored,
and dropped at the next write, as are records whose ID no point has any more.

Earlier versions kept the record in the point's description (JSON with ``"cmbdetector": 1``).
A node without the measurement is read that way; the first write (or :func:`migrate`) moves
those records into the measurement and clears the descriptions.
"""

from __future__ import annotations

import json

import slicer

MEASUREMENT_NAME = "CMBDetector review"
VERSION = 2
LEGACY_VERSION = 1
FINGERPRINT = ("_label", "_xyz")
POSITION_TOLERANCE_MM = 1e-3


def _measurement(node):
    return node.GetMeasurement(MEASUREMENT_NAME)


def has_store(node) -> bool:
    """True when the node keeps its records in the measurement (new format)."""
    return _measurement(node) is not None


def _position(node, index: int) -> list[float]:
    xyz = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(index, xyz)
    return xyz


def _fingerprint(node, index: int) -> dict:
    return {"_label": node.GetNthControlPointLabel(index), "_xyz": _position(node, index)}


def _moved(record: dict, node, index: int) -> bool:
    """True unless the record's stored position is the point's (within the tolerance)."""
    stored = record.get("_xyz")
    if not (isinstance(stored, list) and len(stored) == 3):
        return True
    return max(abs(a - b) for a, b in zip(stored, _position(node, index))) > POSITION_TOLERANCE_MM


def _belongs(record: dict, node, index: int) -> bool:
    return record.get("_label") == node.GetNthControlPointLabel(index) or not _moved(record, node, index)


def decode_legacy(text: str) -> dict | None:
    """The record an earlier version wrote into a point description, or None."""
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    if not (isinstance(data, dict) and data.get("cmbdetector") == LEGACY_VERSION):
        return None
    return {k: v for k, v in data.items() if k != "cmbdetector"}


def _stored(node) -> dict[str, dict]:
    """Raw records from the measurement, keyed by ID (unchecked); {} when missing or unreadable."""
    measurement = _measurement(node)
    try:
        data = json.loads(measurement.GetDescription() or "{}") if measurement else {}
    except json.JSONDecodeError:
        return {}
    points = data.get("points") if isinstance(data, dict) else None
    return {k: v for k, v in points.items() if isinstance(v, dict)} if isinstance(points, dict) else {}


def records_by_index(node) -> list[dict | None]:
    """The record of every control point in order (a copy without fingerprint), None if it has none."""
    n = node.GetNumberOfControlPoints()
    if not has_store(node):
        return [decode_legacy(node.GetNthControlPointDescription(i)) for i in range(n)]
    stored = _stored(node)
    out = []
    for i in range(n):
        record = stored.get(node.GetNthControlPointID(i))
        valid = record is not None and _belongs(record, node, i)
        out.append({k: v for k, v in record.items() if k not in FINGERPRINT} if valid else None)
    return out


def record(node, index: int) -> dict | None:
    """The record of point ``index`` (a copy), None if it has none."""
    return records_by_index(node)[index]


def _write(node, by_index: list[dict | None]) -> None:
    points = {}
    for i, fields in enumerate(by_index):
        if fields is not None:
            points[node.GetNthControlPointID(i)] = {**fields, **_fingerprint(node, i)}
    text = json.dumps({"cmbdetector": VERSION, "points": points}, separators=(",", ":"))
    measurement = _measurement(node)
    if measurement is None:
        measurement = slicer.vtkMRMLStaticMeasurement()
        measurement.SetName(MEASUREMENT_NAME)
        node.AddMeasurement(measurement)
        _clear_legacy_descriptions(node)
    elif measurement.GetDescription() == text:
        return
    measurement.SetDescription(text)
    node.StorableModified()  # "modified since read": the Save dialog offers the node
    node.Modified()  # observers (ReviewSync) hear of it


def _clear_legacy_descriptions(node) -> None:
    for i in range(node.GetNumberOfControlPoints()):
        if decode_legacy(node.GetNthControlPointDescription(i)) is not None:
            node.SetNthControlPointDescription(i, "")


def update_records(node, fields_by_index: dict[int, dict], replace: bool = False) -> None:
    """Merge ``fields`` into the records of the given points (or replace them) in one write.

    Records of deleted points are dropped and every fingerprint is refreshed (also when
    ``fields_by_index`` is empty).
    """
    current = records_by_index(node)
    for index, fields in fields_by_index.items():
        base = {} if replace or current[index] is None else current[index]
        current[index] = {**base, **fields}
    _write(node, current)


def moved(node) -> list[int]:
    """Points whose position changed since their record was last written."""
    stored = _stored(node)
    out = []
    for i in range(node.GetNumberOfControlPoints()):
        record = stored.get(node.GetNthControlPointID(i))
        if record is not None and _belongs(record, node, i) and _moved(record, node, i):
            out.append(i)
    return out


def migrate(node) -> bool:
    """Move description records of an earlier version into the measurement; True if any moved."""
    if has_store(node):
        return False
    legacy = records_by_index(node)
    if all(r is None for r in legacy):
        return False
    _write(node, legacy)
    return True
