"""The MARS region atlas and the registration template in MNI152 2009a space.

Resources/Atlases/ holds the Microbleed Anatomical Rating Scale regions (Gregoire et al. 2009)
as uint8 labels on the 2009a 1 mm grid and the 2009a T1 at 2 mm (brain only); ATLAS.md records
their origin and licences. :func:`region_at` turns template-space RAS points into
:class:`RegionLabel` (class, region, side).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import CMBDetectorError
from .geometry import Geometry, from_sitk, to_sitk
from .regions import REGIONS, UNKNOWN, RegionLabel, side_of

ATLAS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Atlases"
LABELS_FILE = "MARS_MNI152_2009a_1mm.nii.gz"
TEMPLATE_FILE = "MNI152_2009a_T1_2mm.nii.gz"

SNAP_MM = 4.0  # a point just outside the atlas brain takes the nearest label within this distance


@dataclass(frozen=True)
class RegionAtlas:
    """MARS labels (``[k, j, i]`` uint8, 0 outside the brain) and the 2 mm T1 template (SimpleITK)."""

    labels: np.ndarray
    geometry: Geometry
    template: sitk.Image

    def region_at(self, template_ras) -> list[RegionLabel]:
        """Region labels of (N, 3) template-space RAS points; points farther than ``SNAP_MM``
        from the atlas brain are unknown."""
        pts = np.atleast_2d(np.asarray(template_ras, dtype=float))
        ijk = np.round(self.geometry.ras_to_ijk_points(pts)).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(self.labels.shape)[::-1]), axis=1)
        values = np.zeros(len(pts), dtype=np.uint8)
        values[inside] = self.labels[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
        for n in np.flatnonzero(values == 0):
            values[n] = self._nearest(pts[n])
        return [RegionLabel(REGIONS[v][1], REGIONS[v][0], side_of(p[0])) if v else UNKNOWN
                for v, p in zip(values, pts)]

    def _nearest(self, ras) -> int:
        ijk = self.geometry.ras_to_ijk_points(ras)[0]
        r = int(np.ceil(SNAP_MM / float(self.geometry.spacing.min())))
        lo = np.maximum(np.round(ijk).astype(int) - r, 0)
        hi = np.minimum(np.round(ijk).astype(int) + r + 1, np.asarray(self.labels.shape)[::-1])
        if np.any(hi <= lo):
            return 0
        box = self.labels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        found = np.argwhere(box > 0)
        if not len(found):
            return 0
        dist = np.linalg.norm((found[:, ::-1] + lo - ijk) * self.geometry.spacing, axis=1)
        best = int(np.argmin(dist))
        return int(box[tuple(found[best])]) if dist[best] <= SNAP_MM else 0

    def labels_image(self) -> sitk.Image:
        """The label map as a SimpleITK image (for resampling onto a scan)."""
        return to_sitk(self.labels, self.geometry)


@functools.lru_cache(maxsize=2)
def load_region_atlas(directory: Path = ATLAS_DIR) -> RegionAtlas:
    """Read the shipped atlas and template once per process."""
    paths = [Path(directory) / name for name in (LABELS_FILE, TEMPLATE_FILE)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CMBDetectorError(f"Atlas file(s) missing: {', '.join(missing)}. Reinstall the extension or run "
                               "scripts/make_atlas.py.")
    labels, geometry = from_sitk(sitk.ReadImage(str(paths[0])))
    template = sitk.ReadImage(str(paths[1]), sitk.sitkFloat32)
    return RegionAtlas(np.ascontiguousarray(labels.astype(np.uint8)), geometry, template)


def template_brain(atlas: RegionAtlas) -> sitk.Image:
    """Brain mask of the 2 mm template (uint8), holes filled."""
    arr = ndimage.binary_fill_holes(sitk.GetArrayFromImage(atlas.template) > 0).astype(np.uint8)
    image = sitk.GetImageFromArray(arr)
    image.CopyInformation(atlas.template)
    return image
