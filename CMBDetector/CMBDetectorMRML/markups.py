"""Detections as a ``vtkMRMLMarkupsFiducialNode`` with a per-point review status.

Storage (survives .mrk.json and .mrb save + reload): each control point has a record
``{"status", "source", "score", "diameter_mm", "candidate_score", "cnn_score", "yolo_score",
"paramagnetic_score", "location", "region", "side", "ijk"}`` keyed by its control point ID in a
measurement of the node (:mod:`.point_records`), which the Markups module does not show as an editable field; it
is the single source of truth (labels and descriptions can be edited freely). Other features
add fields with :func:`update_point_data`. Everything visible is derived from the records by
:func:`apply_display` and saved too:

- pending  -> point *selected*   -> drawn in the display node's selected colour (yellow)
- accepted -> point unselected   -> drawn in the display node's colour (green)
- rejected -> point hidden (per-point visibility off), still listed in the table/CSV

Every point is *locked* (detector positions are outputs, not meant to be dragged). A point
without a record (e.g. placed with the Markups module) counts as reader-added and accepted.
Labels are ``CMB-1..n`` in decreasing score and ``Reader-1..`` for reader points.
Run metadata (device, threshold, timings, warnings) goes into ``CMBDetector.*`` node attributes,
which .mrb scenes keep and .mrk.json files do not.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import vtk

from CMBDetectorLib import results
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.regions import REGION_LOCATION, location_of
from CMBDetectorLib.results import DetectionResult

from . import point_records

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
STATUSES = (PENDING, ACCEPTED, REJECTED)
DETECTOR, READER = "detector", "reader"
SIZE_CLASSES = ("<5 mm", "5-10 mm", ">10 mm", "unknown size")
PENDING_COLOR = (1.0, 0.85, 0.0)
ACCEPTED_COLOR = (0.2, 0.9, 0.2)
ATTRIBUTE_PREFIX = "CMBDetector."
VOLUME_ROLE = "CMBDetector.InputVolume"
TABLE_ROLE = "CMBDetector.Table"


@dataclass(frozen=True)
class PointInfo:
    """One control point as the review sees it (a table/CSV row)."""

    index: int
    label: str
    ras: tuple[float, float, float]
    ijk: tuple[float, float, float] | None
    diameter_mm: float | None
    candidate_score: float | None
    cnn_score: float | None
    yolo_score: float | None
    paramagnetic_score: float | None
    score: float | None
    status: str
    source: str
    location: str
    region: str = "unknown"  # MARS region; the reader may correct it (set_region)
    side: str = "unknown"


@dataclass(frozen=True)
class ReviewCounts:
    """Review tallies; ``final`` is what a report counts (accepted detections + reader-added)."""

    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    reader_added: int = 0

    @property
    def final(self) -> int:
        return self.accepted + self.reader_added

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + self.pending + self.reader_added


def _round(value, digits=4):
    return None if value is None else round(float(value), digits)


def size_class(diameter_mm: float | None) -> str:
    return SIZE_CLASSES[3] if diameter_mm is None else results.size_class(diameter_mm)


def _check_index(node, index: int) -> None:
    if not 0 <= index < node.GetNumberOfControlPoints():
        raise CMBDetectorError(
            f"Point index {index} is out of range: '{node.GetName()}' has {node.GetNumberOfControlPoints()} points.")


def ensure_display(node) -> None:
    """Create the display node if needed and set the status colours and a 2D circle glyph."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetSelectedColor(*PENDING_COLOR)
    display.SetColor(*ACCEPTED_COLOR)
    display.SetGlyphTypeFromString("Circle2D")
    display.SetPointLabelsVisibility(True)


def fill_fiducials(node, result: DetectionResult) -> None:
    """Replace the node's points with one pending point per detection (labels CMB-1.. by score)."""
    detections = sorted(result.detections, key=lambda d: d.score, reverse=True)
    was_modifying = node.StartModify()
    node.RemoveAllControlPoints()
    records = {}
    for n, det in enumerate(detections, start=1):
        index = node.AddControlPointWorld(vtk.vtkVector3d(*(float(v) for v in det.ras)), f"CMB-{n}")
        records[index] = {
            "status": PENDING, "source": DETECTOR, "score": _round(det.score),
            "diameter_mm": _round(det.diameter_mm, 2), "candidate_score": _round(det.candidate_score),
            "cnn_score": _round(det.cnn_score), "yolo_score": _round(det.yolo_score),
            "paramagnetic_score": _round(det.paramagnetic_score), "location": det.location,
            "region": det.region, "side": det.side, "ijk": [_round(v, 3) for v in det.ijk]}
    point_records.update_records(node, records, replace=True)
    node.SetAttribute(ATTRIBUTE_PREFIX + "Device", result.device)
    node.SetAttribute(ATTRIBUTE_PREFIX + "NumberOfCandidates", str(result.n_candidates))
    node.SetAttribute(ATTRIBUTE_PREFIX + "Timings", json.dumps({k: round(v, 3) for k, v in result.timings.items()}))
    node.SetAttribute(ATTRIBUTE_PREFIX + "Warnings", json.dumps(result.warnings))
    node.SetAttribute(ATTRIBUTE_PREFIX + "Threshold", str(result.threshold))
    node.SetAttribute(ATTRIBUTE_PREFIX + "UsedPhase", str(result.used_phase).lower())
    node.SetAttribute(ATTRIBUTE_PREFIX + "ScanCall", "present" if result.has_microbleeds else "absent")
    ensure_display(node)
    apply_display(node)
    node.EndModify(was_modifying)


def _with_defaults(record: dict | None) -> dict:
    return {"status": ACCEPTED, "source": READER, **(record or {})}


def point_data(node, index: int) -> dict:
    """Every stored field of point ``index``; a point without a record is an accepted reader point."""
    _check_index(node, index)
    return _with_defaults(point_records.record(node, index))


def update_point_data(node, index: int, **fields) -> None:
    """Store ``fields`` (JSON-able values) in the record of point ``index``, keeping its other fields."""
    _check_index(node, index)
    point_records.update_records(node, {index: fields})


def point_info(node, index: int) -> PointInfo:
    """Read point ``index`` (world RAS position, stored scores, status, source)."""
    _check_index(node, index)
    return _point_info(node, index, point_data(node, index))


def _point_info(node, index: int, data: dict) -> PointInfo:
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(index, ras)
    ijk = data.get("ijk")
    return PointInfo(
        index=index, label=node.GetNthControlPointLabel(index), ras=tuple(ras),
        ijk=tuple(ijk) if ijk else None, diameter_mm=data.get("diameter_mm"),
        candidate_score=data.get("candidate_score"), cnn_score=data.get("cnn_score"),
        yolo_score=data.get("yolo_score"), paramagnetic_score=data.get("paramagnetic_score"),
        score=data.get("score"),
        status=data.get("status", ACCEPTED), source=data.get("source", READER),
        location=data.get("location", "unknown"), region=data.get("region", "unknown"),
        side=data.get("side", "unknown"))


def points(node) -> list[PointInfo]:
    """Every point, except the preview that follows the mouse while a point is being placed."""
    preview = node.PositionPreview
    return [_point_info(node, i, _with_defaults(record))
            for i, record in enumerate(point_records.records_by_index(node))
            if node.GetNthControlPointPositionStatus(i) != preview]


def get_status(node, index: int) -> str:
    return point_info(node, index).status


def set_status(node, index: int, status: str) -> None:
    """Set ``pending``/``accepted``/``rejected`` on point ``index`` and refresh its display."""
    if status not in STATUSES:
        raise CMBDetectorError(f"Unknown review status '{status}'; use one of {', '.join(STATUSES)}.")
    _check_index(node, index)
    update_point_data(node, index, status=status)
    _apply_point_display(node, index, status, pending_only=False)


def mark_reader_point(node, index: int, ijk=None, diameter_mm: float | None = None, location: str = "unknown",
                      region: str = "unknown", side: str = "unknown") -> None:
    """Stamp an existing point (e.g. just placed by the user) as reader-added and accepted."""
    _check_index(node, index)
    was_modifying = node.StartModify()
    node.SetNthControlPointLabel(index, f"Reader-{_last_reader_number(node, index) + 1}")
    point_records.update_records(node, {index: {
        "status": ACCEPTED, "source": READER, "score": None, "diameter_mm": _round(diameter_mm, 2),
        "candidate_score": None, "cnn_score": None, "yolo_score": None, "paramagnetic_score": None,
        "location": location, "region": region, "side": side,
        "ijk": None if ijk is None else [_round(v, 3) for v in ijk]}}, replace=True)
    _apply_point_display(node, index, ACCEPTED, pending_only=False)
    node.EndModify(was_modifying)


def _last_reader_number(node, skip: int) -> int:
    """Highest n of the other points labelled ``Reader-n`` (0 if none): labels stay unique after deletions."""
    numbers = [0]
    for i in range(node.GetNumberOfControlPoints()):
        label = node.GetNthControlPointLabel(i)
        if i != skip and label.startswith("Reader-") and label[len("Reader-"):].isdigit():
            numbers.append(int(label[len("Reader-"):]))
    return max(numbers)


def add_reader_point(node, ras, ijk=None, diameter_mm: float | None = None, location: str = "unknown",
                     region: str = "unknown", side: str = "unknown") -> int:
    """Add a CMB the detector missed (status accepted, source reader); returns its index."""
    was_modifying = node.StartModify()  # observers see the point once, already stamped
    index = node.AddControlPointWorld(vtk.vtkVector3d(*(float(v) for v in ras)), "")
    mark_reader_point(node, index, ijk=ijk, diameter_mm=diameter_mm, location=location, region=region, side=side)
    node.EndModify(was_modifying)
    return index


def set_region(node, index: int, region: str) -> None:
    """The reader's correction of point ``index``'s MARS region; the class follows the region,
    the side is kept."""
    if region != "unknown" and location_of(region) == "unknown":
        raise CMBDetectorError(f"Unknown region '{region}'; use one of {', '.join(REGION_LOCATION)} or unknown.")
    update_point_data(node, index, region=region, location=location_of(region), region_source=READER)


def _apply_point_display(node, index: int, status: str, pending_only: bool) -> None:
    node.SetNthControlPointSelected(index, status == PENDING)
    node.SetNthControlPointLocked(index, True)
    hidden = status == REJECTED or (pending_only and status != PENDING)
    node.SetNthControlPointVisibility(index, not hidden)


def apply_display(node, pending_only: bool = False) -> None:
    """Derive selection (colour), lock and visibility of every point from its status.

    ``pending_only`` additionally hides accepted points (the review's "show only pending" filter).
    """
    was_modifying = node.StartModify()
    for info in points(node):
        _apply_point_display(node, info.index, info.status, pending_only)
    node.EndModify(was_modifying)


def counts(node) -> ReviewCounts:
    """Tally statuses; accepted reader points count as ``reader_added``, not ``accepted``."""
    tally = Counter("reader_added" if p.source == READER and p.status == ACCEPTED else p.status for p in points(node))
    return ReviewCounts(**tally)


def has_review(node) -> bool:
    """True when any point was accepted, rejected, added or had its region corrected by a reader
    (work to protect)."""
    return (any(p.status != PENDING or p.source == READER for p in points(node))
            or any(r is not None and r.get("region_source") == READER for r in point_records.records_by_index(node)))
