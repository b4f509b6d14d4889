"""Venous tree: dural sinuses, deep veins, cortical/sulcal veins with branches and medullary veins.

Veins are grown as polylines in template (MNI) space by vectorised random walkers steered by
the template's distance maps, then mapped to the scanner and rendered as partial-volume tubes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Atlas

VENOUS_CHI_PPM = (0.3, 0.5)  # deoxyhaemoglobin, Hct ~0.42, Y ~0.6


@dataclass(frozen=True)
class Vessel:
    """Polyline vein: points (n, 3) mm and radius (n,) mm."""

    kind: str
    points: np.ndarray
    radii: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _grad(atlas: Atlas, name: str, pts: np.ndarray, h: float = 1.0) -> np.ndarray:
    eye = np.eye(3) * h
    cols = [atlas.sample(name, pts + e) - atlas.sample(name, pts - e) for e in eye]
    return np.stack(cols, -1) / (2 * h)


def _walk(rng, atlas, start, direction, n_steps, step, steer, noise=0.15, surface=None):
    """Vectorised walkers; ``steer(p)`` gives a preferred direction, ``surface`` a target sdist."""
    p, d = start.copy(), _unit(direction)
    path = [p.copy()]
    for _ in range(n_steps):
        d = _unit(0.65 * d + 0.35 * steer(p) + rng.normal(0, noise, p.shape))
        if surface is not None:
            n = _unit(_grad(atlas, "sdist", p))
            d = _unit(d - np.sum(d * n, -1, keepdims=True) * n)
        p = p + step * d
        if surface is not None:
            n = _unit(_grad(atlas, "sdist", p))
            p = p - (atlas.sample("sdist", p) - surface)[:, None] * n
        path.append(p.copy())
    return np.stack(path, 1)  # (walkers, steps + 1, 3)


def _medullary(rng, atlas: Atlas, n: int) -> list[Vessel]:
    """Thin straight-ish veins running from the ventricle wall outwards through white matter."""
    seeds = atlas.regions["periventricular"]
    start = atlas.index_to_ras(seeds[rng.integers(len(seeds), size=n)] + rng.uniform(-0.5, 0.5, (n, 3)))

    def outward(p):
        return _unit(_grad(atlas, "dvent", p))

    paths = _walk(rng, atlas, start, outward(start), 28, 1.2, outward, noise=0.1)
    lengths = rng.integers(10, 29, n)
    radii = rng.uniform(0.2, 0.4, n)
    out = []
    for path, length, r in zip(paths, lengths, radii):
        wm = atlas.sample("wm", path)
        stop = np.flatnonzero(wm < 0.5)
        end = min(length, stop[0] if stop.size else length)
        if end >= 4:
            out.append(Vessel("medullary", path[:end], np.linspace(r * 0.7, r, end)))
    return out


def _cortical(rng, atlas: Atlas, n: int) -> list[Vessel]:
    """Surface veins draining towards the vertex, with thinner (partly sulcal) branches."""
    seeds = atlas.regions["surface"]
    start = atlas.index_to_ras(seeds[rng.integers(len(seeds), size=n)])

    def up(p):  # towards the vertex and the midline (superior sagittal sinus)
        return _unit(np.stack([-np.sign(p[:, 0]) * 0.5, 0.2 * np.sign(p[:, 1] + 18), np.ones(len(p))], -1))

    depth = rng.uniform(-1.5, -0.3, n)
    paths = _walk(rng, atlas, start, up(start) + rng.normal(0, 0.5, (n, 3)), 30, 2.0, up, 0.25, depth)
    out = []
    for path, length in zip(paths, rng.integers(10, 31, n)):
        near_mid = np.flatnonzero(np.abs(path[:, 0]) < 4)
        end = min(length, near_mid[0] + 1 if near_mid.size else length)
        r = rng.uniform(0.6, 1.3)
        out.append(Vessel("cortical", path[:end], np.linspace(0.6 * r, r, end)))
        out.extend(_branches(rng, atlas, path[:end], r))
    return out


def _branches(rng, atlas: Atlas, trunk: np.ndarray, radius: float) -> list[Vessel]:
    """Tributaries of a cortical vein; sulcal ones dive into the brain along the CSF."""
    n = int(rng.integers(2, 6))

    def inward(p):  # into the sulcus: away from the surface, up the CSF fraction
        return _unit(-_grad(atlas, "sdist", p) + _grad(atlas, "csf", p))

    out = []
    for _ in range(n):
        p0 = trunk[rng.integers(len(trunk))][None]
        if rng.random() < 0.5:
            path = _walk(rng, atlas, p0, inward(p0), int(rng.integers(4, 9)), 1.5, inward, 0.2)[0]
            out.append(Vessel("sulcal", path, np.full(len(path), radius * rng.uniform(0.35, 0.6))))
        else:
            path = _walk(rng, atlas, p0, rng.normal(0, 1, (1, 3)), int(rng.integers(4, 10)), 2.0, np.zeros_like,
                         0.3, rng.uniform(-1.5, -0.3))[0]
            out.append(Vessel("cortical", path, np.full(len(path), radius * rng.uniform(0.4, 0.7))))
    return out


def _push_out(atlas: Atlas, pts: np.ndarray, clearance: np.ndarray) -> np.ndarray:
    """Move points outside the brain mask by ``clearance`` mm (sinuses lie in the dura)."""
    for _ in range(4):
        short = np.maximum(clearance - atlas.sample("sdist", pts), 0)
        pts = pts + short[:, None] * _unit(_grad(atlas, "sdist", pts))
    return pts


def _superior_sagittal(rng, atlas: Atlas) -> Vessel:
    angles = np.deg2rad(np.linspace(-5, 200, 60))
    dirs = np.stack([np.zeros_like(angles), np.cos(angles), np.sin(angles)], -1)
    center = np.array([0.0, -18.0, 12.0])
    radial = np.arange(0, 130, 1.0)
    inside = atlas.sample("brain", (center + dirs[:, None, :] * radial[None, :, None]).reshape(-1, 3))
    inside = inside.reshape(len(dirs), len(radial)) > 0.5
    edge = radial[np.array([np.flatnonzero(row).max() for row in inside])]
    radii = np.interp(np.linspace(0, 1, len(angles)), [0, 1], [1.5, 4.0]) * rng.uniform(0.8, 1.1)
    pts = center + dirs * (edge + radii + 1.0)[:, None]
    return Vessel("sinus", _push_out(atlas, pts, radii + 0.5), radii)


DEEP_VEINS = (  # (name, polyline MNI with x >= 0, radius mm, mirrored)
    ("internal_cerebral", ((2.5, 3, 17), (2.5, -12, 17), (2, -28, 12), (0.5, -40, 7)), 1.2, True),
    ("thalamostriate", ((17, 8, 18), (12, 1, 18), (4, 2, 17)), 0.8, True),
    ("basal_rosenthal", ((22, 0, -12), (20, -18, -8), (12, -30, -2), (2, -40, 6)), 1.0, True),
    ("galen_straight", ((0, -40, 7), (0, -46, 6), (0, -70, 1), (0, -100, -3)), 2.2, False),
    ("transverse", ((0, -104, -3), (28, -102, -10), (48, -82, -20), (55, -58, -33)), 3.0, True),
)


def _polyline(points, step: float = 1.0) -> np.ndarray:
    pts = np.asarray(points, float)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.arange(0, s[-1] + 1e-9, step)
    return np.stack([np.interp(t, s, pts[:, a]) for a in range(3)], -1)


def _deep(rng, atlas: Atlas) -> list[Vessel]:
    out = []
    for name, points, radius, bilateral in DEEP_VEINS:
        jitter = rng.normal(0, 1.5, 3)
        for side in ([1, -1] if bilateral else [1]):
            pts = _polyline(np.asarray(points) * [side, 1, 1] + jitter * [side, 1, 1])
            r = np.full(len(pts), radius * rng.uniform(0.85, 1.15))
            if name == "transverse":
                pts = _push_out(atlas, pts, r * 0.6)
            out.append(Vessel("sinus" if radius >= 2 else "deep", pts, r))
    return out


def sample_vessels(rng: np.random.Generator, atlas: Atlas, medullary_density: float = 1.0) -> list[Vessel]:
    """A complete random venous tree in template space (``medullary_density`` scales the
    medullary vein count)."""
    vessels = [_superior_sagittal(rng, atlas)] + _deep(rng, atlas)
    vessels += _cortical(rng, atlas, int(rng.integers(50, 80)))
    vessels += _medullary(rng, atlas, int(round(int(rng.integers(150, 300)) * medullary_density)))
    return vessels


def through_slice_veins(rng: np.random.Generator, atlas: Atlas, n: int) -> list[Vessel]:
    """``n`` tortuous veins in brain tissue running within ~25 deg of template S (about B0),
    each with a branch half of the time: dots on axial slices, tubes on the others."""
    if n <= 0:
        return []
    seeds = np.concatenate([atlas.regions["lobar"], atlas.regions["deep"]])
    start = atlas.index_to_ras(seeds[rng.integers(len(seeds), size=n)] + rng.uniform(-0.5, 0.5, (n, 3)))
    tilt = rng.normal(0, 0.3, (n, 3)) * [1, 1, 0] + [0, 0, 1]
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    axis = _unit(tilt) * sign

    def along(p):
        return axis

    noise = rng.uniform(0.05, 0.3)  # tortuosity of this scan's veins
    paths = _walk(rng, atlas, start, axis, 24, 1.0, along, noise)
    lengths, radii = rng.integers(8, 25, n), rng.uniform(0.3, 0.8, n)
    out = []
    for path, length, r in zip(paths, lengths, radii):
        inside = np.flatnonzero(atlas.sample("brain", path) < 0.5)
        end = min(length, inside[0] if inside.size else length)
        if end < 4:
            continue
        out.append(Vessel("through_slice", path[:end], np.linspace(0.7 * r, r, end)))
        if rng.random() < 0.5:
            p0 = path[rng.integers(end)][None]
            branch = _walk(rng, atlas, p0, rng.normal(0, 1, (1, 3)), int(rng.integers(4, 10)), 1.0, np.zeros_like,
                           0.3)[0]
            out.append(Vessel("through_slice", branch, np.full(len(branch), 0.6 * r)))
    return out


def render_tubes(ijk_to_ras: np.ndarray, shape_kji, segments: np.ndarray, radii: np.ndarray):
    """Partial-volume fraction and (3 cos^2 theta - 1) of tube segments on a voxel grid.

    ``segments`` is (N, 2, 3) RAS end points, ``radii`` (N,). Returns float32 maps ``(frac, orient)``.
    """
    frac = np.zeros(shape_kji, np.float32)
    orient = np.zeros(shape_kji, np.float32)
    mat, origin = ijk_to_ras[:3, :3], ijk_to_ras[:3, 3]
    inv = np.linalg.inv(mat)
    spacing = np.linalg.norm(mat, axis=0)
    h = float(np.prod(spacing) ** (1 / 3))
    limit = np.asarray(shape_kji)[::-1]
    for (a, b), r in zip(segments, radii):
        ends = (np.stack([a, b]) - origin) @ inv.T
        pad = (r + h) / spacing
        lo = np.clip(np.floor(ends.min(0) - pad).astype(int), 0, limit)
        hi = np.clip(np.ceil(ends.max(0) + pad).astype(int) + 1, 0, limit)
        if np.any(hi <= lo):
            continue
        kk, jj, ii = np.meshgrid(*[np.arange(lo[x], hi[x]) for x in (2, 1, 0)], indexing="ij", sparse=True)
        p = [mat[c, 0] * ii + mat[c, 1] * jj + mat[c, 2] * kk + (origin[c] - a[c]) for c in range(3)]
        ab = b - a
        t = np.clip(sum(p[c] * ab[c] for c in range(3)) / max(ab @ ab, 1e-9), 0, 1)
        d = np.sqrt(sum((p[c] - t * ab[c]) ** 2 for c in range(3)))
        f = np.clip(0.5 + (r - d) / h, 0, 1) * min(1.0, 2 * r / h)
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        better = f > frac[box]
        frac[box] = np.where(better, f, frac[box])
        cos2 = ab[2] ** 2 / max(ab @ ab, 1e-9)
        orient[box] = np.where(better, 3 * cos2 - 1, orient[box])
    return frac, orient


def tube_segments(vessels_ras: list[Vessel]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten polylines to (N, 2, 3) segments and their mean radii."""
    segs = [np.stack([v.points[:-1], v.points[1:]], 1) for v in vessels_ras if len(v.points) > 1]
    radii = [(v.radii[:-1] + v.radii[1:]) / 2 for v in vessels_ras if len(v.points) > 1]
    return np.concatenate(segs), np.concatenate(radii)
