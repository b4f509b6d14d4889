"""Baseline / follow-up comparison on MRML nodes: change lists, change table, CSV and summary.

Each scan gets one fiducial list per change status, pending points drawn in the status colour
(new red, possible new orange, persistent blue, resolved grey); the review (accept / reject,
``markups.set_status``) applies to the change call. A change table lists every microbleed of
both lists with its status; :func:`write_outputs` writes it as CSV plus a one-row summary with
the counts and the ARIA-H grade.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.followup.change import (NEW, PERSISTENT, POSSIBLE_NEW, RESOLVED, Cutoffs, aria_h_grade)
from CMBDetectorLib.followup.compare import Visit, VisitComparison, compare_visits
from CMBDetectorLib.followup.protocols import mismatch_warning
from CMBDetectorLib.progress import CancelCheck, ProgressCallback
from CMBDetectorLib.results import DetectionResult
from CMBDetectorLib.trained_range import range_warning

from . import acquisition_info, markups, tables, volumes
from .files import atomic_write_text

CHANGE_COLORS = {NEW: (1.0, 0.1, 0.1), POSSIBLE_NEW: (1.0, 0.55, 0.0), PERSISTENT: (0.2, 0.5, 1.0),
                 RESOLVED: (0.6, 0.6, 0.6)}
CHANGE_LABELS = {NEW: "New", POSSIBLE_NEW: "Possible", PERSISTENT: "Persistent", RESOLVED: "Resolved"}
FOLLOWUP_CHANGES = (NEW, POSSIBLE_NEW, PERSISTENT)
BASELINE_CHANGES = (PERSISTENT, RESOLVED)
CHANGE_ATTRIBUTE = "CMBDetector.Change"  # the list's change status (each point's record has it too)
VISIT_ATTRIBUTE = "CMBDetector.Visit"  # "baseline" or "follow-up"
LIST_ROLE = "CMBDetector.ChangeList"  # table -> every change list
TABLE_COLUMNS = ("label", "visit", "change", "R", "A", "S", "score", "diameter_mm", "region", "baseline_R",
                 "baseline_A", "baseline_S", "distance_mm", "baseline_score", "baseline_contrast", "status")
TEXT_COLUMNS = ("label", "visit", "change", "region", "status")
SUMMARY_COLUMNS = ("baseline", "followup", "status", "new", "possible_new", "persistent", "resolved",
                   "aria_h_grade", "aria_h_grade_if_possible_confirmed", "registration_dice", "error", "warnings")


@dataclass
class ComparisonNodes:
    """What :func:`compare_nodes` created: change lists per scan, the change table, the
    registration as a transform node (follow-up -> baseline; not applied to any node: put the
    follow-up under it to overlay the visits), the result."""

    followupLists: dict[str, object]
    baselineLists: dict[str, object]
    tableNode: object
    transformNode: object
    comparison: VisitComparison
    warnings: list[str] = field(default_factory=list)


def compare_nodes(baselineNode, followupNode, config: DetectorConfig | None = None, baselinePhaseNode=None,
                  followupPhaseNode=None, cutoffs: Cutoffs = Cutoffs(), progress: ProgressCallback | None = None,
                  cancel: CancelCheck | None = None) -> ComparisonNodes:
    """Register, detect at both visits, call the changes and add lists + table to the scene.

    Raises ``CMBDetectorError`` (and adds nothing) when the registration fails.
    """
    from .logic import _rollback_on_error

    scene = baselineNode.GetScene() if baselineNode is not None else None
    if scene is None or followupNode is None or followupNode.GetScene() is not scene:
        raise CMBDetectorError("Select a baseline and a follow-up volume of the same scene.")
    if baselineNode is followupNode:
        raise CMBDetectorError("The baseline and the follow-up are the same volume: select two visits.")
    visits = []
    for node, phase in ((baselineNode, baselinePhaseNode), (followupNode, followupPhaseNode)):
        array, geometry = volumes.volume_to_array(node)
        visits.append(Visit(array, geometry, None if phase is None else volumes.phase_to_array(phase, node)))
    comparison = compare_visits(*visits, config=config, cutoffs=cutoffs, progress=progress, cancel=cancel)
    with _rollback_on_error(scene):
        table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                        scene.GenerateUniqueName(f"{followupNode.GetName()} changes"))
        follow = {c: _change_list(followupNode, "follow-up", c, comparison.followup, comparison, table)
                  for c in FOLLOWUP_CHANGES}
        base = {c: _change_list(baselineNode, "baseline", c, comparison.baseline, comparison, table)
                for c in BASELINE_CHANGES}
        update_change_table(table)
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode",
                                            scene.GenerateUniqueName(f"{followupNode.GetName()} to baseline"))
        transform.SetMatrixTransformToParent(
            volumes.numpy_to_matrix(comparison.change.registration.followup_to_baseline))
    return ComparisonNodes(follow, base, table, transform, comparison,
                           comparison_warnings(comparison, (baselineNode, followupNode), visits))


def comparison_warnings(comparison: VisitComparison, nodes, visits: list[Visit]) -> list[str]:
    """Each visit's run warnings and trained-range warning (prefixed with the visit), then a
    warning when the visits were acquired differently (:mod:`CMBDetectorLib.followup.protocols`)."""
    database = acquisition_info.application_database()
    acquired = [(visit.geometry, acquisition_info.read(node, database)) for node, visit in zip(nodes, visits)]
    warnings = []
    for name, result, (geometry, acquisition) in zip(("Baseline", "Follow-up"),
                                                     (comparison.baseline, comparison.followup), acquired):
        out_of_range = range_warning(geometry, acquisition)
        warnings += [f"{name}: {w}" for w in result.warnings + ([out_of_range] if out_of_range else [])]
    mismatch = mismatch_warning(*acquired)
    return warnings + ([mismatch] if mismatch else [])


def _change_list(volume, visit: str, change: str, result: DetectionResult, comparison: VisitComparison, table):
    """A fiducial list of the ``visit`` scan holding its microbleeds of one change status."""
    scene = volume.GetScene()
    rows = [r for r in comparison.change.rows if r.change == change]
    if visit == "baseline":  # baseline side of each row: the matched baseline detection
        rows = [r for r in rows if r.baseline_detection is not None]
        detections = [r.baseline_detection for r in rows]
    else:
        detections = [r.detection for r in rows]
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode",
                                   scene.GenerateUniqueName(f"{volume.GetName()} {change}"))
    markups.fill_fiducials(node, replace(result, detections=detections))
    order = sorted(range(len(rows)), key=lambda n: detections[n].score, reverse=True)  # fill_fiducials' order
    for index, n in enumerate(order):
        row = rows[n]
        node.SetNthControlPointLabel(index, f"{CHANGE_LABELS[change]}-{index + 1}")
        markups.update_point_data(
            node, index, change=change, region=row.region, distance_mm=row.distance_mm,
            matched=None if visit == "baseline" or row.baseline_ras is None else list(row.baseline_ras),
            baseline_score=row.baseline_score, baseline_contrast=row.baseline_contrast)
    node.SetAttribute(CHANGE_ATTRIBUTE, change)
    node.SetAttribute(VISIT_ATTRIBUTE, visit)
    node.SetNodeReferenceID(markups.VOLUME_ROLE, volume.GetID())
    node.GetDisplayNode().SetSelectedColor(*CHANGE_COLORS[change])
    if visit == "follow-up" or change == RESOLVED:  # one table row per microbleed
        table.AddNodeReferenceID(LIST_ROLE, node.GetID())
    return node


def change_lists(table) -> list:
    """The table's lists: follow-up new / possible new / persistent and baseline resolved (the
    baseline's persistent list only shows where the persistent ones were)."""
    return [table.GetNthNodeReference(LIST_ROLE, n) for n in range(table.GetNumberOfNodeReferences(LIST_ROLE))]


def change_rows(table) -> list[dict]:
    """One dict per point of every change list (keys :data:`TABLE_COLUMNS`), review status included."""
    rows = []
    for node in change_lists(table):
        for index in range(node.GetNumberOfControlPoints()):
            info, extra = markups.point_info(node, index), markups.point_data(node, index)
            matched = extra.get("matched") or (None, None, None)
            rows.append({"label": info.label, "visit": node.GetAttribute(VISIT_ATTRIBUTE),
                         "change": extra.get("change", node.GetAttribute(CHANGE_ATTRIBUTE)),
                         "R": info.ras[0], "A": info.ras[1],
                         "S": info.ras[2], "score": info.score, "diameter_mm": info.diameter_mm,
                         "region": extra.get("region", info.location), "baseline_R": matched[0],
                         "baseline_A": matched[1], "baseline_S": matched[2], "distance_mm": extra.get("distance_mm"),
                         "baseline_score": extra.get("baseline_score"),
                         "baseline_contrast": extra.get("baseline_contrast"), "status": info.status})
    return rows


def update_change_table(table) -> None:
    """Rebuild the change table from its lists (after a review decision too)."""
    tables.fill_table(table, change_rows(table), TABLE_COLUMNS, TEXT_COLUMNS)


def set_change_status(table, node, index: int, status: str) -> None:
    """Accept / reject the change call of point ``index`` of change list ``node``."""
    markups.set_status(node, index, status)
    update_change_table(table)


def reviewed_counts(table) -> dict[str, int]:
    """Microbleeds per change status as reviewed: rejected points drop out; a "possible new"
    counts as new once accepted."""
    counts = dict.fromkeys((NEW, POSSIBLE_NEW, PERSISTENT, RESOLVED), 0)
    for row in change_rows(table):
        if row["status"] == markups.REJECTED:
            continue
        change = NEW if row["change"] == POSSIBLE_NEW and row["status"] == markups.ACCEPTED else row["change"]
        counts[change] += 1
    return counts


def summary_row(baseline: str, followup: str, table=None, dice: float | None = None, error: str = "",
                warnings=()) -> dict:
    """A summary row: reviewed counts, ARIA-H grade and warnings, or the error of a failed pair."""
    if table is None:
        return {**dict.fromkeys(SUMMARY_COLUMNS, ""), "baseline": baseline, "followup": followup,
                "status": "failed", "error": error}
    counts = reviewed_counts(table)
    return {"baseline": baseline, "followup": followup, "status": "ok", "new": counts[NEW],
            "possible_new": counts[POSSIBLE_NEW], "persistent": counts[PERSISTENT], "resolved": counts[RESOLVED],
            "aria_h_grade": aria_h_grade(counts[NEW]),
            "aria_h_grade_if_possible_confirmed": aria_h_grade(counts[NEW] + counts[POSSIBLE_NEW]),
            "registration_dice": dice, "error": "", "warnings": " | ".join(warnings)}


def write_outputs(nodes: ComparisonNodes, output_dir, name: str, baseline: str, followup: str) -> tuple[Path, Path]:
    """Write ``<name>_changes.csv`` (one row per microbleed) and ``<name>_summary.csv``."""
    output_dir = Path(output_dir)
    changes, summary = output_dir / f"{name}_changes.csv", output_dir / f"{name}_summary.csv"
    atomic_write_text(changes, tables.rows_to_csv(change_rows(nodes.tableNode), TABLE_COLUMNS))
    row = summary_row(baseline, followup, nodes.tableNode, nodes.comparison.change.registration.dice,
                      warnings=nodes.warnings)
    atomic_write_text(summary, tables.rows_to_csv([row], SUMMARY_COLUMNS))
    return changes, summary
