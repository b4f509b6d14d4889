"""Placement of the template head in the scanner and the voxel grid -> template mapping.

Scanner RAS ``p`` and template (MNI) point ``m`` are related by a head pose
``p = R diag(s) (m - c_mni) + c_scan`` followed by a smooth random warp, which is stored as a
displacement (mm) on a coarse grid of the scan's (fine) voxel lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..geometry import Geometry

HEAD_CENTER_MNI = np.array([0.0, -18.0, 12.0])
WARP_NODE_MM = 20.0
WARP_NODES = 19  # per axis, centred on the field of view: the warp does not depend on the grid


@dataclass(frozen=True)
class HeadPose:
    """Rigid + scaling placement of the template head in scanner RAS."""

    rotation: np.ndarray
    scale: np.ndarray
    center_scan: np.ndarray

    def to_scanner(self, mni) -> np.ndarray:
        """(N, 3) template mm -> scanner RAS mm (without the warp)."""
        return (np.atleast_2d(mni) - HEAD_CENTER_MNI) @ (self.rotation @ np.diag(self.scale)).T + self.center_scan

    def inverse_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, t) with ``m = M p + t``."""
        m = np.diag(1 / self.scale) @ self.rotation.T
        return m, HEAD_CENTER_MNI - m @ self.center_scan


def sample_pose(rng: np.random.Generator) -> HeadPose:
    """Random head tilt (pitch/roll/yaw), size and position in the scanner."""
    angles = rng.normal(0, 1, 3) * np.array([8.0, 4.0, 5.0])  # about R (pitch), A (roll), S (yaw)
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    scale = rng.uniform(0.92, 1.08) * rng.uniform(0.96, 1.04, 3)
    return HeadPose(rotation, scale, rng.normal(0, 8, 3))


def sample_direction(rng: np.random.Generator) -> np.ndarray:
    """Oblique axial slice orientation with random in-plane axis polarity (RAS columns)."""
    flips = np.diag([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0]), 1.0])
    oblique = Rotation.from_rotvec(rng.normal(0, 1, 3) * np.deg2rad([7.0, 4.0, 5.0])).as_matrix()
    return oblique @ flips


class GridMapping:
    """Voxel (i, j, k) of a scan grid -> continuous template index, affine plus smooth warp.

    The warp lives on a node lattice along the scan axes, 20 mm apart and centred on
    ``center_ras``, so it is the same physical deformation whatever the voxel size.
    """

    def __init__(self, geometry: Geometry, shape_kji, pose: HeadPose, atlas_origin, rng, warp_mm: float,
                 center_ras):
        self.shape = tuple(shape_kji)
        m, t = pose.inverse_matrix()
        self.matrix = m @ geometry.ijk_to_ras[:3, :3]
        self.offset = m @ geometry.ijk_to_ras[:3, 3] + t - np.asarray(atlas_origin)
        self.step = WARP_NODE_MM / geometry.spacing  # fine voxels per node, (i, j, k)
        self.center = geometry.ras_to_ijk_points(center_ras)[0]
        noise = rng.standard_normal((3, WARP_NODES, WARP_NODES, WARP_NODES))
        field = np.stack([ndimage.gaussian_filter(c, 1.0, mode="nearest") for c in noise])
        self.coarse = (field * (warp_mm / max(field.std(), 1e-6))).astype(np.float32)
        self._kji = [self._weights(n, c, s) for n, c, s in zip(self.shape, self.center[::-1], self.step[::-1])]
        i0, wi = self._kji[2]
        j0, wj = self._kji[1]
        along_i = self.coarse[..., i0] * (1 - wi) + self.coarse[..., i0 + 1] * wi
        self._ij = along_i[:, :, j0, :] * (1 - wj)[:, None] + along_i[:, :, j0 + 1, :] * wj[:, None]

    def _node_coords(self, index, center, step):
        return np.clip((index - center) / step + WARP_NODES // 2, 0, WARP_NODES - 1.001)

    def _weights(self, n: int, center: float, step: float):
        t = self._node_coords(np.arange(n), center, step)
        i0 = np.floor(t).astype(int)
        return i0, (t - i0).astype(np.float32)

    def template_coords(self, k0: int, k1: int) -> np.ndarray:
        """Template array coordinates ``(3, k1-k0, nj, ni)`` (k, j, i order) of voxels in slab k0:k1."""
        nk, nj, ni = self.shape
        k0_idx, wk = self._kji[0]
        kk = np.arange(k0, k1, dtype=np.float32)[:, None, None]
        jj = np.arange(nj, dtype=np.float32)[None, :, None]
        ii = np.arange(ni, dtype=np.float32)[None, None, :]
        out = np.empty((3, k1 - k0, nj, ni), np.float32)
        w = wk[k0:k1, None, None]
        for c in range(3):
            disp = self._ij[c, k0_idx[k0:k1]] * (1 - w) + self._ij[c, k0_idx[k0:k1] + 1] * w
            a = self.matrix[c].astype(np.float32)
            out[2 - c] = a[0] * ii + a[1] * jj + (a[2] * kk + np.float32(self.offset[c])) + disp
        return out

    def displacement(self, ijk) -> np.ndarray:
        """Warp (mm) at (N, 3) continuous voxel indices."""
        t = self._node_coords(np.atleast_2d(ijk), self.center, self.step)[:, ::-1].T
        return np.stack([ndimage.map_coordinates(c, t, order=1, mode="nearest") for c in self.coarse], -1)

    def template_to_ijk(self, template_index) -> np.ndarray:
        """Invert the mapping for (N, 3) template indices (fixed-point iteration on the warp)."""
        target = np.atleast_2d(template_index) - self.offset
        inv = np.linalg.inv(self.matrix)
        ijk = target @ inv.T
        for _ in range(8):
            ijk = (target - self.displacement(ijk)) @ inv.T
        return ijk
