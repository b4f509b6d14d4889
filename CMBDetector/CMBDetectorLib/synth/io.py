"""Writing synthetic scans (NIfTI + objects CSV) and reading the objects back."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import CMBDetectorError
from ..geometry import write_image
from .objects import SyntheticObject

CSV_COLUMNS = ("kind", "R", "A", "S", "diameter_mm", "true_diameter_mm", "is_cmb", "label", "location",
               "MNI_R", "MNI_A", "MNI_S")


class ScanPaths(NamedTuple):
    """Files written by :func:`write_scan` (``phase`` None when the scan has no phase)."""

    magnitude: Path
    phase: Path | None
    labels: Path
    objects: Path


def write_objects_csv(path, objects) -> Path:
    """Write objects with RAS centres (mm) in the documented column order."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for o in objects:
            writer.writerow([o.kind, *(f"{v:.3f}" for v in o.center_ras), f"{o.diameter_mm:.3f}",
                             f"{o.true_diameter_mm:.3f}", int(o.is_cmb), o.label, o.location,
                             *([f"{v:.3f}" for v in o.template_ras] if o.template_ras else ["", "", ""])])
    return path


def read_objects_csv(path) -> list[SyntheticObject]:
    """Read an objects CSV written by :func:`write_scan`."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise CMBDetectorError(f"Cannot read objects file '{path}': {exc}") from exc
    try:
        return [SyntheticObject(
            kind=r["kind"], center_ras=(float(r["R"]), float(r["A"]), float(r["S"])),
            diameter_mm=float(r["diameter_mm"]), true_diameter_mm=float(r["true_diameter_mm"]),
            is_cmb=r["is_cmb"].strip().lower() in ("1", "true", "yes"), label=int(r["label"]),
            location=r.get("location") or "", template_ras=_template_ras(r)) for r in rows]
    except (KeyError, ValueError) as exc:
        raise CMBDetectorError(f"'{path}' is not a synthetic objects CSV (columns {', '.join(CSV_COLUMNS)}).") from exc


def _template_ras(row: dict) -> tuple | None:
    values = [row.get(f"MNI_{axis}") for axis in "RAS"]
    return tuple(float(v) for v in values) if all(values) else None


def write_scan(scan, out_dir, name: str, magnitude_dtype=np.float32) -> ScanPaths:
    """Write ``{name}_mag/_phase/_labels.nii.gz`` and ``{name}_objects.csv`` into ``out_dir``.

    ``magnitude_dtype=np.int16`` stores the rounded magnitude (smaller files).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mag = scan.magnitude
    if np.issubdtype(np.dtype(magnitude_dtype), np.integer):
        mag = np.clip(np.round(mag), 0, np.iinfo(magnitude_dtype).max)
    paths = ScanPaths(out / f"{name}_mag.nii.gz", None if scan.phase is None else out / f"{name}_phase.nii.gz",
                      out / f"{name}_labels.nii.gz", out / f"{name}_objects.csv")
    write_image(paths.magnitude, mag.astype(magnitude_dtype), scan.geometry)
    if paths.phase is not None:
        write_image(paths.phase, scan.phase.astype(np.float32), scan.geometry)
    write_image(paths.labels, scan.labels.astype(np.uint16), scan.geometry)
    write_objects_csv(paths.objects, scan.objects)
    return paths
