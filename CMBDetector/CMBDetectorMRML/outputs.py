"""Where a scan's results go: ``<name>.mrk.json``, ``<name>.csv``, ``<name>_counts.csv``,
``<name>_report.html`` and, when the run warned, ``<name>.warnings.txt``. A ``.mrk.json`` that holds a review (points accepted, rejected or
added in Slicer) is never replaced unless asked: the new results get the next free
``<name>-runN`` name instead."""

from __future__ import annotations

from pathlib import Path

import slicer

from . import markups
from .files import atomic_write_text
from .scene import new_scene

OUTPUT_SUFFIXES = (".mrk.json", ".csv", "_counts.csv", "_report.html", ".warnings.txt")


def is_reviewed(path) -> bool:
    """True when the .mrk.json at ``path`` holds review work, or cannot be read (then it is kept too)."""
    path = Path(path)
    if not path.is_file():
        return False
    headless = new_scene()
    node = headless.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        return True
    return markups.has_review(node)


def free_name(output_dir, name: str, overwrite: bool) -> tuple[str, str | None]:
    """The output stem for a scan named ``name``, and a warning when it is not ``name`` because
    ``name.mrk.json`` holds a review (``overwrite`` replaces it instead)."""
    output_dir = Path(output_dir)
    if overwrite or not is_reviewed(output_dir / f"{name}.mrk.json"):
        return name, None
    n = 2
    while is_reviewed(output_dir / f"{name}-run{n}.mrk.json"):
        n += 1
    new = f"{name}-run{n}"
    return new, (f"'{name}.mrk.json' holds a review (points accepted, rejected or added) and was kept; "
                 f"the new results are in '{new}.mrk.json' and '{new}.csv' (--overwrite replaces the reviewed file).")


def earlier_outputs(output_dir, name: str) -> list[str]:
    """Output files of ``name`` already in ``output_dir`` (from an earlier run)."""
    return [f"{name}{suffix}" for suffix in OUTPUT_SUFFIXES if (Path(output_dir) / f"{name}{suffix}").exists()]


def write_warnings(output_dir, name: str, warnings: list[str]) -> Path | None:
    """Write ``<name>.warnings.txt`` (one warning a line), or remove an earlier one when there are none."""
    path = Path(output_dir) / f"{name}.warnings.txt"
    if not warnings:
        path.unlink(missing_ok=True)
        return None
    atomic_write_text(path, "".join(f"{w}\n" for w in warnings))
    return path
