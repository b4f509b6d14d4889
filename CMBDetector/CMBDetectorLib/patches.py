"""Fixed-size 3D patches and 2D crops (axial, or three orthogonal planes) around working-space points."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PAD_VALUE = 1.0  # median brain intensity after normalisation


class PatchSource:
    """Cubes of one image, padded once for many calls (a scan's candidates come in batches)."""

    def __init__(self, image: np.ndarray, size: int):
        self.size = size
        self.padded = np.pad(image, size // 2, mode="constant", constant_values=PAD_VALUE)

    def __call__(self, kji: np.ndarray) -> np.ndarray:
        """(N, size, size, size) float32 cubes centred on integer ``kji`` points, padded at the edges."""
        size = self.size
        out = np.empty((len(kji), size, size, size), dtype=np.float32)
        for n, (k, j, i) in enumerate(np.asarray(kji, dtype=int)):
            out[n] = self.padded[k:k + size, j:j + size, i:i + size]
        return out


def extract_patches(image: np.ndarray, kji: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, size) float32 cubes centred on integer ``kji`` points, padded at the edges."""
    return PatchSource(image, size)(kji)


def extract_axial_crops(image: np.ndarray, kji: np.ndarray, size: int, offsets=(-1, 0, 1),
                        upscale: int = 1) -> np.ndarray:
    """(N, len(offsets), size·upscale, size·upscale, 3) uint8 crops: for each slice offset through
    the point, the slice and its two neighbours as RGB channels (adjacent-slice context),
    bilinearly enlarged ``upscale`` times so small lesions span several detector strides."""
    half = size // 2
    base = 2 + max(map(abs, offsets))
    padded = np.pad(image, ((base, base), (half, half), (half, half)), mode="constant", constant_values=PAD_VALUE)
    out = np.empty((len(kji), len(offsets), size, size, 3), dtype=np.float32)
    for n, (k, j, i) in enumerate(np.asarray(kji, dtype=int)):
        for m, off in enumerate(offsets):
            kk = k + off + base
            out[n, m] = np.moveaxis(padded[kk - 1:kk + 2, j:j + size, i:i + size], 0, -1)
    return to_uint8(_enlarge(out, upscale))


def extract_orthogonal_crops(image: np.ndarray, kji: np.ndarray, size: int, upscale: int = 1) -> np.ndarray:
    """(N, size·upscale, size·upscale, 3) uint8 crops whose channels are the axial (rows j, columns
    i), coronal (rows k, columns i) and sagittal (rows k, columns j) planes through each point: a
    sphere is a dot centred in all three, a vessel along any axis a line in two of them."""
    half = size // 2
    padded = np.pad(image, half, mode="constant", constant_values=PAD_VALUE)
    out = np.empty((len(kji), size, size, 3), dtype=np.float32)
    for n, (k, j, i) in enumerate(np.asarray(kji, dtype=int)):
        cube = padded[k:k + size, j:j + size, i:i + size]
        out[n, ..., 0] = cube[half]
        out[n, ..., 1] = cube[:, half]
        out[n, ..., 2] = cube[:, :, half]
    return to_uint8(_enlarge(out, upscale))


def _enlarge(crops: np.ndarray, upscale: int) -> np.ndarray:
    """Bilinear enlargement of the two image axes (the two before the channel axis)."""
    if upscale <= 1:
        return crops
    factors = (1,) * (crops.ndim - 3) + (upscale, upscale, 1)
    return ndimage.zoom(crops, factors, order=1, grid_mode=True, mode="nearest")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Normalised intensity [0, 2] -> [0, 255]."""
    return (np.clip(image, 0.0, 2.0) * 127.5).astype(np.uint8)
