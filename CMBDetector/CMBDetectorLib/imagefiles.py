"""Reading scan files as a clinic or a research group has them: a truncated NIfTI is refused
(SimpleITK would pad it with zeros), NaN voxels the NIfTI reader turns into 0 are reported, a
multi-echo 4D file gives one echo (or all echoes combined), and formats SimpleITK cannot read
(FreeSurfer .mgz) or 2D/time-series images get a message naming the file and what to do.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import CMBDetectorError
from .geometry import Geometry, from_sitk
from .validation import MAX_ECHOES, select_echo

_MGH = ("a FreeSurfer MGH image, which CMBDetector does not read; convert it with "
        "'mri_convert {name} {stem}.nii.gz' (FreeSurfer) and run on the .nii.gz")
UNSUPPORTED_SUFFIXES = {
    ".mgz": _MGH,
    ".mgh": _MGH,
    ".img": "half of an Analyze/NIfTI pair (.hdr + .img); convert the pair to one .nii.gz file",
    ".nii.bz2": "a bzip2-compressed NIfTI; decompress it (bunzip2) or recompress it with gzip",
    ".zip": "an archive; unpack it and run on the folder",
}
_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes that can hold NaN/Inf
_CHUNK = 1 << 22


def unsupported_reason(path) -> str | None:
    """Why CMBDetector cannot read ``path`` by its name (e.g. ``.mgz``), or None."""
    name = Path(path).name
    for suffix, reason in UNSUPPORTED_SUFFIXES.items():
        if name.lower().endswith(suffix):
            return reason.format(name=name, stem=name[: -len(suffix)])
    return None


def _nifti_layout(header: bytes, path) -> tuple[str, int, int, int]:
    """(byte order, data offset, data bytes, datatype code) from a NIfTI-1 or NIfTI-2 header."""
    for order in "<>":
        size = struct.unpack(order + "i", header[:4])[0] if len(header) >= 4 else 0
        if size == 348 and len(header) >= 348:
            dims = struct.unpack(order + "8h", header[40:56])
            datatype, bitpix = struct.unpack(order + "2h", header[70:74])
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if size == 540 and len(header) >= 540:
            datatype, bitpix = struct.unpack(order + "2h", header[12:16])
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        raise _unreadable(path)
    n_voxels = int(np.prod([max(int(d), 1) for d in dims[1: 1 + max(min(dims[0], 7), 0)]], dtype=np.int64))
    return order, max(offset, 352 if size == 348 else 544), n_voxels * bitpix // 8, datatype


def check_nifti(path) -> int:
    """Refuse a NIfTI file whose data is shorter than its header says or whose gzip stream ends
    early; return the number of NaN/Inf voxels stored (SimpleITK reads them as 0)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"  # by content: ITK also reads a plain file named .nii.gz
    except OSError as exc:
        raise _unreadable(path) from exc
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            header = f.read(544)
            order, offset, n_bytes, datatype = _nifti_layout(header, path)
            return _count_non_finite(f, header, order, offset, n_bytes, datatype, path)
    except gzip.BadGzipFile as exc:
        raise _unreadable(path) from exc
    except (EOFError, zlib.error) as exc:
        raise CMBDetectorError(
            f"'{path}' is truncated or corrupt (its gzip stream ends early or is damaged); "
            "copy or export the scan again.") from exc


def _unreadable(path) -> CMBDetectorError:
    return CMBDetectorError(f"Cannot read image file '{path}': it is missing, truncated or not an image.")


def _count_non_finite(f, header: bytes, order: str, offset: int, n_bytes: int, datatype: int, path) -> int:
    """Read the voxel data to the end of the file; count NaN/Inf values of float data."""
    dtype = np.dtype(order + _NIFTI_FLOAT_TYPES[datatype]) if datatype in _NIFTI_FLOAT_TYPES else None
    if offset > len(header):
        f.read(offset - len(header))
    chunk, carry, seen, bad = header[offset:], b"", 0, 0
    while chunk:
        seen += len(chunk)
        if dtype is not None:
            data = carry + chunk
            usable = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:usable], dtype=dtype)
            bad += values.size - int(np.count_nonzero(np.isfinite(values)))
            carry = data[usable:]
        chunk = f.read(_CHUNK)
    if seen < n_bytes:
        raise CMBDetectorError(
            f"'{path}' is truncated: its header describes {n_bytes:,} bytes of voxel data but the file "
            f"holds {seen:,}; copy or export the scan again.")
    return bad


def read_volume(path) -> tuple[np.ndarray, Geometry, list[str]]:
    """Read a scan file as a ``[k, j, i]`` (or multi-echo ``[k, j, i, echo]``) array, its RAS
    geometry and warnings; refuses truncated, unsupported, 2D and time-series files by name."""
    path = Path(path)
    reason = unsupported_reason(path)
    if reason:
        raise CMBDetectorError(f"'{path.name}' is {reason}.")
    n_non_finite = check_nifti(path) if path.name.lower().endswith((".nii", ".nii.gz")) else 0
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise _unreadable(path) from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CMBDetectorError(
            f"'{path}' has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB/vector); "
            "give a single-channel magnitude image.")
    warnings = []
    if n_non_finite:
        warnings.append(f"{path.name}: {n_non_finite:,} voxels are NaN or infinite in the file and were read as 0.")
    array, geometry = _volume_array(image, path)
    return array, geometry, warnings


def _volume_array(image: sitk.Image, path: Path) -> tuple[np.ndarray, Geometry]:
    """``[k, j, i]`` (3D) or ``[k, j, i, echo]`` (4D) array and the spatial geometry."""
    size = image.GetSize()
    if image.GetDimension() == 2 or (image.GetDimension() == 3 and 1 in size):
        raise CMBDetectorError(
            f"'{path.name}' is a single 2D slice ({' x '.join(str(s) for s in size[:2])} voxels); "
            "microbleed detection needs the whole 3D volume: export all slices of the series as one "
            "file, or give the DICOM folder.")
    if image.GetDimension() == 3:
        return from_sitk(image)
    if image.GetDimension() != 4:
        raise CMBDetectorError(f"'{path.name}' has {image.GetDimension()} dimensions; give a 3D volume.")
    n_frames = size[3]
    if n_frames > MAX_ECHOES:
        raise CMBDetectorError(
            f"'{path.name}' holds {n_frames} volumes along its 4th axis: it looks like a time series "
            "(fMRI/DWI), not a multi-echo SWI/T2* scan; extract the one 3D volume to analyse.")
    _, geometry = from_sitk(sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0]))
    return np.moveaxis(sitk.GetArrayFromImage(image), 0, -1), geometry


def _check_echo(n_echoes: int, echo: int | None, label: str) -> None:
    if echo is not None and not 0 <= echo < n_echoes:
        raise CMBDetectorError(
            f"{label} has {n_echoes} echoes; pass --echo N with N from 0 (first echo) to {n_echoes - 1}.")


def pick_echo(array: np.ndarray, echo: int | None, label: str) -> tuple[np.ndarray, list[str]]:
    """The magnitude volume to analyse: a 3D array as it is, or one echo (0-based) of a
    ``[k, j, i, echo]`` array, all echoes combined by root-sum-of-squares when ``echo`` is None."""
    if array.ndim == 3:
        if echo not in (None, 0):
            raise CMBDetectorError(f"{label} holds a single echo; --echo {echo} applies to multi-echo scans only.")
        return array, []
    _check_echo(array.shape[-1], echo, label)
    volume, warnings = select_echo(array, echo)
    return volume, [f"{label}: {w}" for w in warnings]


def pick_phase_echo(array: np.ndarray, echo: int | None, label: str) -> np.ndarray:
    """The phase volume to use: a 3D array as it is, or echo ``echo`` of a multi-echo phase
    (phase cannot be combined across echoes, so a multi-echo phase needs ``echo``)."""
    if array.ndim == 3:
        return array
    if echo is None:
        raise CMBDetectorError(
            f"The phase image {label} has {array.shape[-1]} echoes and phase cannot be combined across "
            "echoes; pass --echo N (0 = first echo) to use one echo of magnitude and phase.")
    _check_echo(array.shape[-1], echo, label)
    return array[..., echo]
