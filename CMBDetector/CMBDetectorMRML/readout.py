"""MARS-style read-out of the reviewed points: definite (accepted or reader-added) and possible
(pending) microbleeds by size class, location class, region and side, and their pattern.

Rejected points and dark spots wider than 10 mm (haemorrhage or vessel, not a microbleed) are
listed apart and never counted. The read-out goes to a counts table node (referenced from the
fiducial node as :data:`COUNTS_ROLE`), a ``<scan>_counts.csv`` file and the batch summary.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass

import vtk

from CMBDetectorLib.results import LOCATIONS

from . import markups
from .files import atomic_write_text

DEFINITE, POSSIBLE = "definite", "possible"
COUNTED_SIZES = markups.SIZE_CLASSES[:2] + markups.SIZE_CLASSES[3:]  # ">10 mm" is not a microbleed
TOO_LARGE = markups.SIZE_CLASSES[2]
PATTERNS = ("none", "strictly lobar", "deep", "infratentorial", "mixed", "undetermined")
COUNTS_ROLE = "CMBDetector.CountsTable"
CSV_COLUMNS = ("group", "category", "definite", "possible")
SUMMARY_FIELDS = ("definite", "possible", "excluded_over_10mm", "pattern", "definite_lt5mm", "definite_5to10mm",
                  "definite_lobar", "definite_deep", "definite_infratentorial")


@dataclass(frozen=True)
class Tally:
    definite: int = 0
    possible: int = 0


@dataclass(frozen=True)
class ReadOut:
    """Counts of one scan's review; ``pattern`` is computed from the definite microbleeds."""

    definite: int
    possible: int
    rejected: int
    too_large: int  # not rejected, wider than 10 mm: listed, not counted
    by_size: dict[str, Tally]
    by_location: dict[str, Tally]
    by_region_side: dict[tuple[str, str], Tally]
    pattern: str


def grade(point: markups.PointInfo) -> str | None:
    """``definite`` (accepted or reader-added), ``possible`` (pending), or None (not counted:
    rejected, or wider than 10 mm)."""
    if point.status == markups.REJECTED or markups.size_class(point.diameter_mm) == TOO_LARGE:
        return None
    return POSSIBLE if point.status == markups.PENDING else DEFINITE


def pattern(locations) -> str:
    """Distribution of the definite microbleeds: strictly lobar (suggests cerebral amyloid
    angiopathy), deep (deep and/or infratentorial, no lobar: hypertensive arteriopathy),
    infratentorial only, mixed (lobar and deep/infratentorial), undetermined (a location unknown)."""
    found = set(locations)
    if not found:
        return "none"
    if not found <= set(LOCATIONS[:3]):
        return "undetermined"
    if found == {"lobar"}:
        return "strictly lobar"
    if "lobar" in found:
        return "mixed"
    return "infratentorial" if found == {"infratentorial"} else "deep"


def _tallies(pairs, keys=()) -> dict:
    counts = Counter(pairs)
    names = list(keys) + sorted({key for key, _ in counts} - set(keys))
    return {key: Tally(counts[(key, DEFINITE)], counts[(key, POSSIBLE)]) for key in names}


def read_out(node) -> ReadOut:
    """Read-out of the fiducial node's points as they are reviewed now."""
    points = markups.points(node)
    graded = [(p, grade(p)) for p in points]
    counted = [(p, g) for p, g in graded if g is not None]
    return ReadOut(
        definite=sum(g == DEFINITE for _, g in counted), possible=sum(g == POSSIBLE for _, g in counted),
        rejected=sum(p.status == markups.REJECTED for p in points),
        too_large=sum(p.status != markups.REJECTED and g is None for p, g in graded),
        by_size=_tallies(((markups.size_class(p.diameter_mm), g) for p, g in counted), COUNTED_SIZES),
        by_location=_tallies(((p.location, g) for p, g in counted), LOCATIONS[:3]),
        by_region_side=_tallies((((getattr(p, "region", "unknown"), getattr(p, "side", "unknown")), g)
                                 for p, g in counted)),
        pattern=pattern(p.location for p, g in counted if g == DEFINITE))


def rows(readout: ReadOut) -> list[tuple[str, str, int, int]]:
    """(group, category, definite, possible) rows: totals, sizes, locations, region x side,
    pattern, and what was not counted."""
    out = [("total", "microbleeds", readout.definite, readout.possible)]
    out += [("size", name, t.definite, t.possible) for name, t in readout.by_size.items()]
    out += [("location", name, t.definite, t.possible) for name, t in readout.by_location.items()]
    out += [("region", f"{region} {side}".strip(), t.definite, t.possible)
            for (region, side), t in readout.by_region_side.items()]
    out += [("pattern", readout.pattern, readout.definite, readout.possible),
            ("not counted", f"{TOO_LARGE} (not a microbleed)", readout.too_large, 0),
            ("not counted", "rejected", readout.rejected, 0)]
    return out


def to_csv(readout: ReadOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows(readout))
    return out.getvalue()


def write_counts_csv(node, path) -> ReadOut:
    """Write the fiducial node's read-out as ``group,category,definite,possible`` (atomic)."""
    readout = read_out(node)
    atomic_write_text(path, to_csv(readout))
    return readout


def summary_fields(readout: ReadOut) -> dict:
    """The read-out's columns of a batch ``summary.csv`` (:data:`SUMMARY_FIELDS`)."""
    size, where = readout.by_size, readout.by_location
    return dict(zip(SUMMARY_FIELDS, (
        readout.definite, readout.possible, readout.too_large, readout.pattern,
        size[COUNTED_SIZES[0]].definite, size[COUNTED_SIZES[1]].definite,
        where["lobar"].definite, where["deep"].definite, where["infratentorial"].definite)))


def text(readout: ReadOut) -> str:
    """Panel lines: definite/possible, sizes, locations, pattern, exclusions."""
    def join(tallies):
        return ", ".join(f"{name} {t.definite}/{t.possible}" for name, t in tallies.items() if t.definite or t.possible)

    lines = [f"Definite {readout.definite} | possible (pending) {readout.possible} | pattern: {readout.pattern}"]
    if readout.definite or readout.possible:
        lines.append("Definite/possible by size: " + join(readout.by_size))
        lines.append("By location: " + (join(readout.by_location) or "none located"))
    if readout.too_large:
        lines.append(f"Not counted: {readout.too_large} dark spot(s) {TOO_LARGE} (haemorrhage or vessel)")
    return "\n".join(lines)


def refresh_counts_table(fiducial_node) -> None:
    """Rebuild the counts table of ``fiducial_node`` if it has one (after a review change)."""
    if fiducial_node.GetNodeReference(COUNTS_ROLE) is not None:
        update_counts_table(fiducial_node)


def update_counts_table(fiducial_node):
    """Rebuild (creating if needed) the counts table node of ``fiducial_node``; returns it."""
    scene = fiducial_node.GetScene()
    table_node = fiducial_node.GetNodeReference(COUNTS_ROLE)
    if table_node is None:
        table_node = scene.AddNewNodeByClass(
            "vtkMRMLTableNode", scene.GenerateUniqueName(f"{fiducial_node.GetName()} counts"))
        fiducial_node.SetNodeReferenceID(COUNTS_ROLE, table_node.GetID())
    readout = read_out(fiducial_node)
    table = vtk.vtkTable()
    for n, name in enumerate(CSV_COLUMNS):
        array = vtk.vtkStringArray() if n < 2 else vtk.vtkIntArray()
        array.SetName(name)
        for row in rows(readout):
            array.InsertNextValue(row[n])
        table.AddColumn(array)
    was_modifying = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetLocked(True)
    table_node.SetAttribute(markups.ATTRIBUTE_PREFIX + "Pattern", readout.pattern)
    table_node.EndModify(was_modifying)
    return table_node
