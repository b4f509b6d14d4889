"""Review table (``vtkMRMLTableNode``, one row per point) and CSV export."""

from __future__ import annotations

import csv
import io
import math

import vtk

from CMBDetectorLib.errors import CMBDetectorError

from . import markups
from .files import atomic_write_text

COLUMNS = ("label", "R", "A", "S", "I", "J", "K", "diameter_mm", "candidate_score", "cnn_score",
           "yolo_score", "paramagnetic_score", "score", "status", "source", "location",
           "region", "side", "size_class")
TEXT_COLUMNS = ("label", "status", "source", "location", "region", "side", "size_class")


def rows_from_fiducials(node) -> list[dict]:
    """One dict per point, keyed by :data:`COLUMNS`; missing values are ``None``."""
    rows = []
    for p in markups.points(node):
        i, j, k = p.ijk if p.ijk is not None else (None, None, None)
        rows.append({
            "label": p.label, "R": p.ras[0], "A": p.ras[1], "S": p.ras[2], "I": i, "J": j, "K": k,
            "diameter_mm": p.diameter_mm, "candidate_score": p.candidate_score, "cnn_score": p.cnn_score,
            "yolo_score": p.yolo_score, "paramagnetic_score": p.paramagnetic_score, "score": p.score, "status": p.status, "source": p.source,
            "location": p.location, "region": p.region, "side": p.side,
            "size_class": markups.size_class(p.diameter_mm)})
    return rows


def update_table(table_node, fiducial_node) -> None:
    """Rebuild ``table_node`` from the fiducial node's points (numbers as doubles, NaN = missing)."""
    fill_table(table_node, rows_from_fiducials(fiducial_node))


def fill_table(table_node, rows: list[dict], columns=COLUMNS, text_columns=TEXT_COLUMNS) -> None:
    """Replace ``table_node``'s content with ``rows`` (dicts keyed by ``columns``), locked."""
    table = vtk.vtkTable()
    for name in columns:
        array = vtk.vtkStringArray() if name in text_columns else vtk.vtkDoubleArray()
        array.SetName(name)
        for row in rows:
            value = row[name]
            if name in text_columns:
                array.InsertNextValue(str(value))
            else:
                array.InsertNextValue(math.nan if value is None else float(value))
        table.AddColumn(array)
    was_modifying = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetLocked(True)
    table_node.EndModify(was_modifying)


def rows_from_table(table_node) -> list[dict]:
    """Read a table written by :func:`update_table` back as row dicts."""
    table = table_node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise CMBDetectorError(f"Table '{table_node.GetName()}' is not a CMBDetector table (missing {missing}).")
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for name in COLUMNS:
            value = table.GetColumnByName(name).GetVariantValue(r)
            if name in TEXT_COLUMNS:
                row[name] = value.ToString()
            else:
                number = value.ToDouble()
                row[name] = None if math.isnan(number) else number
        rows.append(row)
    return rows


def _format(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def rows_to_csv(rows: list[dict], columns=COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row[name]) for name in columns])
    return out.getvalue()


def export_csv(node, path) -> int:
    """Write a fiducial or table node as CSV (atomic); returns the number of rows."""
    if node is None:
        raise CMBDetectorError("Nothing to export: select a CMB fiducial or table node.")
    if node.IsA("vtkMRMLTableNode"):
        rows = rows_from_table(node)
    elif node.IsA("vtkMRMLMarkupsFiducialNode"):
        rows = rows_from_fiducials(node)
    else:
        raise CMBDetectorError(f"Cannot export '{node.GetName()}' ({node.GetClassName()}) as CMB CSV.")
    atomic_write_text(path, rows_to_csv(rows))
    return len(rows)
