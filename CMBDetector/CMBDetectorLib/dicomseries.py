"""DICOM series as scans: find the series under a folder (GDCM, through SimpleITK), split each
by image type (magnitude ``M`` / phase ``P``) and echo, and pair every magnitude series with the
phase series of the same acquisition (same study, acquisition number and grid; the same series
or the nearest series number).

Each :class:`DicomScan` reads as a ``[k, j, i]`` or ``[k, j, i, echo]`` magnitude array (plus the
phase) with RAS geometry, like an image file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import CMBDetectorError
from .geometry import Geometry, from_sitk
from .trained_range import Acquisition, echo_time_ms, positive_number

IMAGE_TYPE, SERIES_UID, STUDY_UID = "0008|0008", "0020|000e", "0020|000d"
SERIES_NUMBER, ACQUISITION_NUMBER, DESCRIPTION = "0020|0011", "0020|0012", "0008|103e"
ECHO_NUMBERS, ECHO_TIME, FIELD_STRENGTH = "0018|0086", "0018|0081", "0018|0087"
ROWS, COLUMNS, PIXEL_SPACING, ORIENTATION = "0028|0010", "0028|0011", "0028|0030", "0020|0037"
MAGNITUDE, PHASE, PROJECTION = "magnitude", "phase", "projection"
_PROJECTION_TYPES = {"MNIP", "MIN IP", "MINIP", "MIP"}


def is_dicom_file(path) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` name."""
    path = Path(path)
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def image_part(image_type: str) -> str:
    """magnitude / phase / projection from ImageType (0008,0008), e.g. ``ORIGINAL\\PRIMARY\\P\\ND``."""
    values = {v.strip().upper() for v in image_type.split("\\")}
    if values & _PROJECTION_TYPES:
        return PROJECTION
    if "P" in values or "PHASE" in values or any(v.startswith("P_") for v in values):
        return PHASE
    return MAGNITUDE


@dataclass(frozen=True)
class DicomSeries:
    """The files of one image type of one DICOM series, one tuple of slice files per echo."""

    folder: Path
    series_uid: str
    study_uid: str
    series_number: int | None
    acquisition_number: int | None
    description: str
    part: str
    echoes: tuple[tuple[str, ...], ...]
    echo_times: tuple[float | None, ...]
    grid: tuple
    where: str = "."  # the folder relative to the folder searched
    field_strength_t: float | None = None

    @property
    def label(self) -> str:
        number = "" if self.series_number is None else f" {self.series_number}"
        part = "" if self.part == MAGNITUDE else f" {self.part}"
        return f"{self.where}: series{number} '{self.description}'{part}"

    @property
    def name(self) -> str:
        """File-name-safe name for outputs: ``S005_SWI_Images``."""
        number = "S" if self.series_number is None else f"S{self.series_number:03d}"
        text = "".join(c if c.isalnum() or c in "-." else "_" for c in self.description.strip())
        return f"{number}_{text}".strip("_") if text else number

    def acquisition(self, echo: int | None) -> Acquisition:
        """Field strength and the echo time of echo ``echo`` (0-based; None: the echoes' mean,
        as they are combined) from the headers."""
        return Acquisition(self.field_strength_t, echo_time_ms(self.echo_times, echo))

    def read(self) -> tuple[np.ndarray, Geometry]:
        """``[k, j, i]`` (one echo) or ``[k, j, i, echo]`` array and RAS geometry."""
        arrays, geometry = [], None
        for files in self.echoes:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(files))
            try:
                image = reader.Execute()
            except RuntimeError as exc:
                raise CMBDetectorError(
                    f"Cannot read DICOM {self.label} ({len(files)} files in '{self.folder}'): a file is "
                    "missing or damaged; export the series again.") from exc
            if image.GetDimension() != 3 or 1 in image.GetSize():
                raise CMBDetectorError(
                    f"DICOM {self.label} holds a single slice; microbleed detection needs the whole 3D "
                    "series: export every slice.")
            array, geometry = from_sitk(image)
            arrays.append(array)
        return (arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=-1)), geometry


@dataclass(frozen=True)
class DicomScan:
    """A magnitude series and, when found, the phase series of the same acquisition."""

    magnitude: DicomSeries
    phase: DicomSeries | None = None


@dataclass(frozen=True)
class SkippedSeries:
    label: str
    reason: str


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _number(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _series_in(folder: Path, root: Path) -> list[DicomSeries]:
    """Every (series, image type) of one folder, its files split by echo number."""
    found = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        groups: dict[tuple[str, int], list[str]] = defaultdict(list)
        first: dict[tuple[str, int], sitk.ImageFileReader] = {}
        echo_times: dict[tuple[str, int], float | None] = {}
        for path in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid):
            try:
                header = _header(path)
            except RuntimeError:
                continue
            key = (image_part(_tag(header, IMAGE_TYPE)), _number(_tag(header, ECHO_NUMBERS)) or 1)
            groups[key].append(path)
            first.setdefault(key, header)
            echo_times.setdefault(key, _float(_tag(header, ECHO_TIME)))
        for part in sorted({p for p, _ in groups}):
            keys = sorted(k for k in groups if k[0] == part)
            header = first[keys[0]]
            grid = (_tag(header, ROWS), _tag(header, COLUMNS), len(groups[keys[0]]),
                    _tag(header, PIXEL_SPACING), _tag(header, ORIENTATION))
            found.append(DicomSeries(
                folder=folder, series_uid=uid, study_uid=_tag(header, STUDY_UID),
                series_number=_number(_tag(header, SERIES_NUMBER)),
                acquisition_number=_number(_tag(header, ACQUISITION_NUMBER)),
                description=_tag(header, DESCRIPTION), part=part,
                echoes=tuple(tuple(groups[k]) for k in keys), echo_times=tuple(echo_times[k] for k in keys),
                grid=grid, where=folder.relative_to(root).as_posix(),
                field_strength_t=positive_number(_tag(header, FIELD_STRENGTH))))
    return found


def dicom_folders(root, exclude=()) -> list[Path]:
    """Folders under ``root`` (itself included, hidden and ``exclude`` folders skipped) holding DICOM files."""
    excluded = {Path(p).resolve() for p in exclude}
    folders = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(folder) / d).resolve() not in excluded)
        if any(is_dicom_file(Path(folder) / f) for f in files if not f.startswith(".")):
            folders.append(Path(folder))
    return sorted(folders)


def find_scans(root, exclude=()) -> tuple[list[DicomScan], list[SkippedSeries]]:
    """Every DICOM scan under ``root`` (magnitude series paired with their phase series), plus the
    series that are not scans of their own (unpaired phase, projections) with the reason."""
    series = [s for folder in dicom_folders(root, exclude) for s in _series_in(folder, Path(root))]
    magnitudes = [s for s in series if s.part == MAGNITUDE]
    phases = [s for s in series if s.part == PHASE]
    skipped = [SkippedSeries(s.label, "minimum/maximum-intensity projection, not an acquired volume")
               for s in series if s.part == PROJECTION]
    scans = []
    for magnitude in magnitudes:
        partner = _phase_partner(magnitude, phases)
        if partner is not None:
            phases.remove(partner)
        scans.append(DicomScan(magnitude, partner))
    skipped += [SkippedSeries(p.label, "phase series without a magnitude series of the same acquisition "
                                       "(same study, acquisition number, grid and echoes)") for p in phases]
    return scans, skipped


def _phase_partner(magnitude: DicomSeries, phases: list[DicomSeries]) -> DicomSeries | None:
    """The phase series of ``magnitude``'s acquisition: same study, grid, echo count and (when
    both have one) acquisition number; the same series first, else the nearest series number."""
    def matches(phase: DicomSeries) -> bool:
        same_acquisition = (None in (phase.acquisition_number, magnitude.acquisition_number)
                            or phase.acquisition_number == magnitude.acquisition_number)
        return (phase.study_uid == magnitude.study_uid and phase.grid == magnitude.grid
                and len(phase.echoes) == len(magnitude.echoes) and same_acquisition)

    def distance(phase: DicomSeries) -> float:
        if phase.series_uid == magnitude.series_uid:
            return -1.0
        if None in (phase.series_number, magnitude.series_number):
            return float("inf")
        return abs(phase.series_number - magnitude.series_number)

    candidates = [p for p in phases if matches(p)]
    return min(candidates, key=distance) if candidates else None
