"""Input validation and fault handling: every volume, mask, device and weights file is checked
here before the pipeline touches it, so that bad input ends in a :class:`CMBDetectorError`
(or a warning) that tells the user what is wrong and what to do.

Arrays are ``[k, j, i]``; a multi-echo volume is ``[k, j, i, echo]`` (0-based echo index).
Checks run cheapest first and the caller's array is never modified: the only full-size copy is
made after the size checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from .errors import CMBDetectorError
from .geometry import Geometry

MAX_VOXELS = 64_000_000
MIN_AXIS_VOXELS = 4  # a stack of slices, not one image: a partial 2D GRE slab may have 15 x 5 mm
MIN_FIELD_MM = 16.0  # the CNN's patch on the 1 mm working grid
MAX_FIELD_MM = 400.0  # per RAS direction: larger than any head, and 64 M voxels on a 1 mm grid
WARN_ANISOTROPY = 3.0
MAX_ANISOTROPY = 16.0  # 0.45 x 0.45 x 6 mm clinical 2D GRE (ratio 13) must still run
MAX_ECHOES = 32
MAX_LABELS = 8
MAX_NEGATIVE_FRACTION = 0.2
PHASE_NEGATIVE_FRACTION = (0.3, 0.7)
PHASE_MAX_ABS = 4096.5  # radians (±π) or scanner phase units (±4096)
SAMPLE_VOXELS = 1_000_000

CUDA_ABSENT_WARNING = "CUDA was requested but no GPU is available; running on CPU."
GPU_OOM_WARNING = "GPU ran out of memory; fell back to CPU."
RETRAIN_HINT = "reinstall the extension or retrain (python -m CMBDetectorLib.training.train_cnn / train_yolo)"

T = TypeVar("T")


@dataclass
class PreparedInput:
    """A volume the pipeline can run on: finite, non-negative float32 ``[k, j, i]``."""

    array: np.ndarray
    geometry: Geometry
    mask: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    phase: np.ndarray | None = None  # radians, same grid as ``array``


def prepare_input(array, geometry: Geometry, mask=None, echo: int | None = None,
                  max_voxels: int = MAX_VOXELS, rgb: bool = False, phase=None) -> PreparedInput:
    """Check and convert a magnitude volume (and its optional phase image) for detection.

    ``echo`` picks one echo of a ``[k, j, i, echo]`` volume (else echoes are combined by
    root-sum-of-squares); ``rgb`` marks colour/vector data (e.g. a Slicer vector volume);
    ``phase`` is the phase image of the same acquisition (radians or scanner units).
    Raises :class:`CMBDetectorError` for input that cannot be used.
    """
    raw = np.asarray(array)
    _check_layout(raw, rgb)
    spatial = raw.shape[:3]
    warnings: list[str] = []
    _check_size(spatial, geometry, max_voxels, warnings)
    checked_mask = None if mask is None else _check_mask(mask, spatial)
    checked_phase = None if phase is None else _check_phase(phase, spatial, echo)
    _check_not_label_or_phase(raw)
    data = _to_float32(raw, echo, warnings)
    finite = _replace_non_finite(data, warnings)
    _check_not_constant(data, finite)
    _clip_negatives(data, warnings)
    return PreparedInput(data, geometry, checked_mask, warnings, checked_phase)


def select_echo(array, echo: int | None) -> tuple[np.ndarray, list[str]]:
    """float32 ``[k, j, i]`` of one echo (0-based) of a ``[k, j, i, echo]`` volume, or all echoes
    combined by root-sum-of-squares when ``echo`` is None; plus the warnings that caused."""
    warnings: list[str] = []
    return _to_float32(np.asarray(array), echo, warnings), warnings


def is_phase_like(array) -> bool:
    """True when intensities look like a phase map: about half of the non-zero voxels negative,
    the range symmetric around 0 and bounded by ±π (radians) or ±4096 (scanner units)."""
    values = _sample(np.asarray(array)).astype(np.float64)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return False
    negative = np.count_nonzero(values < 0) / values.size
    low, high = -values.min(), values.max()
    if not PHASE_NEGATIVE_FRACTION[0] <= negative <= PHASE_NEGATIVE_FRACTION[1]:
        return False
    bound = max(low, high)
    symmetric = bound <= 1.5 * min(low, high) and abs(np.median(values)) <= 0.1 * bound
    return bool(symmetric and bound <= PHASE_MAX_ABS)


def select_device(requested: str) -> tuple[str, list[str]]:
    """Resolve "auto" / "cpu" / "cuda" (alias "gpu") to the torch device to use, plus warnings."""
    import torch

    choice = str(requested).strip().lower()
    if choice not in ("auto", "cpu", "cuda", "gpu"):
        raise CMBDetectorError(f"Unknown device '{requested}': choose 'auto', 'cpu' or 'cuda'.")
    if choice == "cpu":
        return "cpu", []
    if torch.cuda.is_available():
        return "cuda", []
    return "cpu", ([] if choice == "auto" else [CUDA_ABSENT_WARNING])


def run_with_gpu_fallback(fn: Callable[[str], T], device: str, warnings: list[str]) -> T:
    """Return ``fn(device)``; if a CUDA run runs out of GPU memory, warn and rerun on CPU."""
    import torch

    try:
        return fn(device)
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if not (str(device).startswith("cuda") and _is_out_of_memory(exc)):
            raise
    # Retry outside the except block so the failed run's GPU tensors can be freed first.
    torch.cuda.empty_cache()
    warnings.append(GPU_OOM_WARNING)
    return fn("cpu")


def load_checkpoint(path, required_keys: Iterable[str] = ()) -> dict:
    """Load a weights file saved with ``torch.save`` (tensors only) and check its keys."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CMBDetectorError(f"Model weights not found at '{path}': {RETRAIN_HINT}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for truncated or foreign files
        raise CMBDetectorError(
            f"Model weights file '{path}' is corrupt or truncated: {RETRAIN_HINT}.") from exc
    if not isinstance(checkpoint, dict):
        raise _incompatible(path, "does not hold a dictionary")
    missing = [key for key in required_keys if key not in checkpoint]
    if missing:
        raise _incompatible(path, f"lacks {', '.join(missing)}")
    return checkpoint


def _incompatible(path: Path, detail: str) -> CMBDetectorError:
    return CMBDetectorError(
        f"Model weights file '{path}' {detail}; it is not a CMBDetector checkpoint for this version: "
        f"{RETRAIN_HINT}.")


def _is_out_of_memory(exc: RuntimeError) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _size_text(shape_kji) -> str:
    """Shape as 'i x j x k', the order Slicer shows volume dimensions in."""
    return " x ".join(str(n) for n in reversed(shape_kji))


def _check_layout(raw: np.ndarray, rgb: bool) -> None:
    """Refuse arrays that are not a scalar 3D volume or a [k, j, i, echo] volume."""
    if raw.dtype.kind == "b":
        raise CMBDetectorError(
            "The volume is binary (true/false): it looks like a label map or mask; "
            "select the SWI/T2* magnitude image instead.")
    if raw.dtype.kind not in "iuf":
        raise CMBDetectorError(
            f"Voxel type '{raw.dtype}' is not a real-valued intensity (complex or non-numeric data); "
            "load the magnitude image.")
    if raw.size == 0:
        raise CMBDetectorError(f"The volume is empty (shape {raw.shape}); load a volume with image data.")
    if raw.ndim < 3 or (raw.ndim == 3 and 1 in raw.shape):
        raise CMBDetectorError(
            f"The image is 2D ({_size_text(raw.shape)}); microbleed detection needs a 3D volume: "
            "load the whole SWI/T2* series, not a single slice.")
    if raw.ndim > 4:
        raise CMBDetectorError(
            f"The volume has {raw.ndim} dimensions; give a 3D volume or a 4D multi-echo volume.")
    if rgb or (raw.ndim == 4 and raw.shape[-1] in (3, 4) and raw.dtype == np.uint8):
        raise CMBDetectorError(
            "The volume holds colour (RGB/vector) voxels; convert it to a scalar volume "
            "(e.g. Vector to Scalar Volume module) or load the original grey-scale magnitude image.")
    if raw.ndim == 4 and raw.shape[-1] > MAX_ECHOES:
        raise CMBDetectorError(
            f"The 4D volume has {raw.shape[-1]} frames along its last axis; a multi-echo volume is "
            f"expected as [k, j, i, echo] with at most {MAX_ECHOES} echoes. Load a single 3D echo.")


def _check_size(spatial, geometry: Geometry, max_voxels: int, warnings: list[str]) -> None:
    """Refuse volumes too large, too small for a patch, or too anisotropic."""
    n_voxels = int(np.prod(spatial, dtype=np.int64))
    if n_voxels > max_voxels:
        raise CMBDetectorError(
            f"The volume is {_size_text(spatial)} = {n_voxels:,} voxels, more than the {max_voxels:,} "
            "the detector can process; crop it to the brain (Crop Volume module) or resample it "
            "to a coarser grid.")
    spacing = geometry.spacing  # i, j, k
    counts = np.asarray(spatial[::-1], dtype=float)
    field_mm = counts * spacing
    if counts.min() < MIN_AXIS_VOXELS or field_mm.min() < MIN_FIELD_MM:
        raise CMBDetectorError(
            f"The volume ({_size_text(spatial)} voxels, "
            f"{' x '.join(f'{f:.1f}' for f in field_mm)} mm) is too small for a patch: every "
            f"direction needs at least {MIN_AXIS_VOXELS} voxels covering {MIN_FIELD_MM:.0f} mm. "
            "Load the full brain volume.")
    extent = _ras_extent(spatial, geometry)
    if extent.max() > MAX_FIELD_MM:
        raise CMBDetectorError(
            f"The volume covers {' x '.join(f'{e:.0f}' for e in extent)} mm, larger than a head "
            f"(at most {MAX_FIELD_MM:.0f} mm per direction); check the voxel spacing in the file header "
            "or crop the volume to the brain.")
    ratio = spacing.max() / spacing.min()
    voxel = " x ".join(f"{s:.2f}" for s in spacing)
    if ratio > MAX_ANISOTROPY:
        raise CMBDetectorError(
            f"Voxels are {voxel} mm ({ratio:.0f} times longer in one direction, at most "
            f"{MAX_ANISOTROPY:.0f} allowed): microbleeds cannot be seen between such thick slices. "
            "Use a thinner-slice acquisition.")
    if ratio > WARN_ANISOTROPY:
        warnings.append(
            f"Voxels are {voxel} mm ({ratio:.1f} times longer in one direction); "
            "small microbleeds between thick slices may be missed.")


def _ras_extent(spatial, geometry: Geometry) -> np.ndarray:
    """Size in mm of the RAS bounding box around the volume's outer voxel faces."""
    corners = np.array(list(np.ndindex(2, 2, 2)), dtype=float) * np.asarray(spatial[::-1]) - 0.5
    ras = geometry.ijk_to_ras_points(corners)
    return ras.max(axis=0) - ras.min(axis=0)


def _check_phase(phase, spatial, echo: int | None) -> np.ndarray:
    """Return the phase in radians; refuse another grid, an ambiguous multi-echo phase or a flat image."""
    from .phase import to_radians

    phase = np.asarray(phase)
    if phase.ndim == 4 and phase.shape[:3] == tuple(spatial):
        if echo is None:
            raise CMBDetectorError("The phase image has several echoes: choose the echo to use "
                                   "(the same one for magnitude and phase).")
        if not 0 <= echo < phase.shape[3]:
            raise CMBDetectorError(f"Echo {echo} was requested but the phase image has {phase.shape[3]} echo(es).")
        phase = phase[..., echo]
    if phase.shape != tuple(spatial):
        raise CMBDetectorError(
            f"The phase image is {_size_text(phase.shape)} voxels but the magnitude is {_size_text(spatial)}; "
            "use the phase of the same acquisition (same grid).")
    if not np.issubdtype(phase.dtype, np.number) or np.iscomplexobj(phase):
        raise CMBDetectorError(f"The phase image holds {phase.dtype} values; expected real numbers.")
    radians = to_radians(phase)
    if float(radians.std()) < 1e-6:
        raise CMBDetectorError("The phase image is constant: it carries no phase information.")
    return radians


def _check_mask(mask, spatial) -> np.ndarray:
    """Return the mask as bool; refuse a wrong shape or an empty mask."""
    mask = np.asarray(mask)
    if mask.shape != tuple(spatial):
        raise CMBDetectorError(
            f"The brain mask is {_size_text(mask.shape)} voxels but the volume is {_size_text(spatial)}; "
            "resample the mask onto the volume's grid.")
    checked = mask != 0
    if not checked.any():
        raise CMBDetectorError("The brain mask is empty (no voxel set); draw or compute a mask, or run without one.")
    return checked


def _check_not_label_or_phase(raw: np.ndarray) -> None:
    """Refuse segmentations and phase maps loaded in place of the magnitude image."""
    n_labels = _label_count(raw)
    if n_labels:
        raise CMBDetectorError(
            f"The volume has only {n_labels} distinct integer values: it looks like a label map "
            "(segmentation), not an MRI; select the SWI/T2* magnitude image.")
    if is_phase_like(raw):
        raise CMBDetectorError(
            "The volume looks like a phase image (values symmetric around 0, within ±π or ±4096): "
            "load the magnitude (or SWI) image instead.")


def _to_float32(raw: np.ndarray, echo: int | None, warnings: list[str]) -> np.ndarray:
    """Fresh float32 [k, j, i] copy: the chosen echo, or the root-sum-of-squares of all echoes."""
    n_echoes = 1 if raw.ndim == 3 else raw.shape[-1]
    if echo is not None and not 0 <= echo < n_echoes:
        raise CMBDetectorError(
            f"Echo {echo} was requested but the volume has {n_echoes} echo(es), numbered 0 to {n_echoes - 1}.")
    with np.errstate(over="ignore", invalid="ignore"):
        if raw.ndim == 3:
            return np.array(raw, dtype=np.float32)
        if echo is not None or n_echoes == 1:
            return np.array(raw[..., echo or 0], dtype=np.float32)
        combined = np.zeros(raw.shape[:3], dtype=np.float32)
        for e in range(n_echoes):
            combined += np.square(raw[..., e], dtype=np.float32)
        np.sqrt(combined, out=combined)
    warnings.append(
        f"Combined {n_echoes} echoes by root-sum-of-squares; choose one echo to use it alone.")
    return combined


def _replace_non_finite(data: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Set NaN/Inf voxels to 0 (warning with the count); refuse when most are non-finite.

    Returns the finite-voxel mask."""
    finite = np.isfinite(data)
    n_bad = data.size - int(np.count_nonzero(finite))
    if n_bad * 2 > data.size:
        raise CMBDetectorError(
            f"{n_bad:,} of {data.size:,} voxels ({n_bad / data.size:.0%}) are NaN or infinite: "
            "the volume is corrupted or mostly empty; reload or re-export it.")
    if n_bad:
        data[~finite] = 0
        warnings.append(f"{n_bad:,} voxels were NaN or infinite and were set to 0.")
    return finite


def _check_not_constant(data: np.ndarray, finite: np.ndarray) -> None:
    """Refuse a volume whose finite voxels all have one value."""
    values = data if finite.all() else data[finite]
    if values.min() == values.max():
        raise CMBDetectorError(
            f"Every voxel has the same value ({values.min():g}): the volume is blank; load the SWI/T2* image.")


def _label_count(raw: np.ndarray) -> int:
    """Number of distinct finite values if they are 2 to MAX_LABELS integers (a label map), else 0.

    A cheap sample rules out ordinary images; a sparse label map may look constant in it."""
    if not _integer_levels(_sample(raw)):
        return 0
    n_levels = _integer_levels(raw)
    return n_levels if n_levels >= 2 else 0


def _integer_levels(values: np.ndarray) -> int:
    """Number of distinct finite values if at most MAX_LABELS, all integers; else 0."""
    distinct = np.unique(values)
    distinct = distinct[np.isfinite(distinct)]
    few = distinct.size <= MAX_LABELS and np.array_equal(distinct, np.round(distinct))
    return distinct.size if few else 0


def _clip_negatives(data: np.ndarray, warnings: list[str]) -> None:
    """Clip a few negative voxels to 0 (warning); refuse when many are negative."""
    n_negative = int(np.count_nonzero(data < 0))
    if not n_negative:
        return
    fraction = n_negative / data.size
    if fraction > MAX_NEGATIVE_FRACTION:
        raise CMBDetectorError(
            f"{fraction:.0%} of voxels are negative, but SWI/T2* magnitude images are non-negative; "
            "load the magnitude image rather than a phase, filtered or normalised one.")
    np.maximum(data, 0, out=data)
    warnings.append(f"{n_negative:,} voxels ({fraction:.2%}) had negative intensities and were set to 0.")


def _sample(array: np.ndarray) -> np.ndarray:
    """Flat, evenly strided sample of about SAMPLE_VOXELS voxels (no full-size copy)."""
    step = max(1, int(np.ceil((array.size / SAMPLE_VOXELS) ** (1 / max(array.ndim, 1)))))
    return array[(slice(None, None, step),) * array.ndim].ravel()
