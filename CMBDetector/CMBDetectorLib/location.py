"""Location stage, run after detection: MARS class, region and side of every detection.

    result = pipeline.detect(array, geometry)
    located = locate(result, array, geometry)   # result with location / region / side filled

The scan is registered to the MNI152 2009a template (:mod:`.registration`) and each detection's
template position is looked up in the MARS atlas (:mod:`.atlas`). A registration that fails
(partial coverage, poor overlap) leaves every detection "unknown" and says so in the warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from .atlas import RegionAtlas, load_region_atlas
from .geometry import Geometry, to_sitk
from .registration import AtlasRegistration, register_to_template
from .regions import UNKNOWN, RegionLabel
from .results import DetectionResult


@dataclass
class Located:
    """The detections with their regions and the registration that placed them."""

    result: DetectionResult
    registration: AtlasRegistration


def label_points(registration: AtlasRegistration, ras, atlas: RegionAtlas | None = None) -> list[RegionLabel]:
    """Region labels of (N, 3) scan RAS points; all unknown when the registration failed."""
    pts = np.atleast_2d(np.asarray(ras, dtype=float)).reshape(-1, 3)
    if not registration.ok or not len(pts):
        return [UNKNOWN] * len(pts)
    return (atlas or load_region_atlas()).region_at(registration.to_template(pts))


def locate(result: DetectionResult, array: np.ndarray, geometry: Geometry, mask: np.ndarray | None = None,
           atlas: RegionAtlas | None = None) -> Located:
    """Register the scan and label every detection of ``result`` (a new result; ``result`` is
    not modified)."""
    atlas = atlas or load_region_atlas()
    registration = register_to_template(array, geometry, mask, atlas=atlas)
    labels = label_points(registration, [d.ras for d in result.detections], atlas)
    detections = [replace(d, location=lab.location, region=lab.region, side=lab.side)
                  for d, lab in zip(result.detections, labels)]
    warnings = list(result.warnings) + ([registration.message] if not registration.ok else [])
    timings = {**result.timings, "location": registration.seconds}
    return Located(replace(result, detections=detections, warnings=warnings, timings=timings), registration)


def atlas_on_scan(registration: AtlasRegistration, geometry: Geometry, shape_kji,
                  atlas: RegionAtlas | None = None) -> np.ndarray:
    """MARS labels resampled onto a scan grid (``[k, j, i]`` uint8, 0 outside the brain)."""
    if not registration.ok:
        raise ValueError("The registration failed: there is no atlas to show on this scan.")
    atlas = atlas or load_region_atlas()
    reference = to_sitk(np.zeros(shape_kji, dtype=np.uint8), geometry)
    out = sitk.Resample(atlas.labels_image(), reference, registration.transform, sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(out).astype(np.uint8)
