"""Voxel <-> physical (RAS millimetre) geometry shared by every stage.

Arrays are indexed ``[k, j, i]``; the 4x4 ``ijk_to_ras`` matrix maps homogeneous column
vectors ``(i, j, k, 1)`` to ``(R, A, S, 1)`` exactly like ``vtkMRMLVolumeNode.GetIJKToRASMatrix``.
SimpleITK images live in LPS; :func:`from_sitk` / :func:`to_sitk` convert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import CMBDetectorError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Affine IJK -> RAS mapping of a volume."""

    ijk_to_ras: np.ndarray

    def __post_init__(self):
        m = np.asarray(self.ijk_to_ras, dtype=float)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise CMBDetectorError("Volume geometry must be a finite 4x4 IJK-to-RAS matrix.")
        if abs(np.linalg.det(m[:3, :3])) < 1e-9:
            raise CMBDetectorError("Volume geometry is degenerate (zero spacing or collinear axes).")
        object.__setattr__(self, "ijk_to_ras", m)

    @classmethod
    def from_parts(cls, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> "Geometry":
        """Build from spacing (i, j, k), RAS origin and a 3x3 RAS direction (columns = axes)."""
        d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
        m = np.eye(4)
        m[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=float))
        m[:3, 3] = origin
        return cls(m)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def slice_thickness(self) -> float:
        """The largest voxel size in mm: the slice thickness of a 2D or anisotropic 3D scan."""
        return float(self.spacing.max())

    @property
    def direction(self) -> np.ndarray:
        """3x3 RAS direction cosines, one column per voxel axis."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        return self.ijk_to_ras[:3, 3].copy()

    def ijk_to_ras_points(self, ijk) -> np.ndarray:
        """Map (N, 3) continuous voxel indices (i, j, k) to RAS mm."""
        p = np.atleast_2d(np.asarray(ijk, dtype=float))
        return p @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_ijk_points(self, ras) -> np.ndarray:
        """Map (N, 3) RAS mm points to continuous voxel indices (i, j, k)."""
        p = np.atleast_2d(np.asarray(ras, dtype=float))
        inv = np.linalg.inv(self.ijk_to_ras)
        return p @ inv[:3, :3].T + inv[:3, 3]


def from_sitk(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """Return the ``[k, j, i]`` array and RAS geometry of a 3D SimpleITK image."""
    if image.GetDimension() != 3:
        raise CMBDetectorError(f"Expected a 3D image, got {image.GetDimension()}D.")
    direction_lps = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    geom = Geometry.from_parts(
        spacing=image.GetSpacing(),
        origin=LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float),
        direction=LPS_TO_RAS @ direction_lps,
    )
    return sitk.GetArrayFromImage(image), geom


def to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Wrap a ``[k, j, i]`` array and RAS geometry as a SimpleITK (LPS) image."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in geometry.spacing))
    image.SetOrigin(tuple(float(v) for v in LPS_TO_RAS @ geometry.origin))
    image.SetDirection(tuple(float(v) for v in (LPS_TO_RAS @ geometry.direction).ravel()))
    return image


def read_image(path) -> tuple[np.ndarray, Geometry]:
    """Read a 3D scalar image file (NIfTI, NRRD, MHA...) as array + RAS geometry."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CMBDetectorError(f"Cannot read image file '{path}': it is missing, truncated or not an image.") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CMBDetectorError(
            f"'{path}' has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB/vector); "
            "give a single-channel magnitude image.")
    if image.GetDimension() != 3:
        raise CMBDetectorError(
            f"'{path}' is a {image.GetDimension()}D image; give a 3D volume (a 2D file is one slice: export "
            "the whole series; a 4D multi-echo file: run the CLI with --echo N, 0 = first echo).")
    return from_sitk(image)


def write_image(path, array: np.ndarray, geometry: Geometry) -> None:
    sitk.WriteImage(to_sitk(array, geometry), str(path), useCompression=True)
