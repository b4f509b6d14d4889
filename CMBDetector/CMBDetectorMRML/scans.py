"""What a batch folder holds: image files (with their ``X_phase`` or BIDS ``part-phase``
partner) and DICOM series (magnitude paired with phase), found in the folder and its subfolders;
plus the files and series that are skipped, with the reason, for ``summary.csv``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from CMBDetectorLib import dicomseries, imagefiles, scanfiles, sidecars, trained_range
from CMBDetectorLib.dicomseries import DicomScan
from CMBDetectorLib.scanfiles import phase_partner

from . import acquisition_info, volumes


BIDS_NOT_RAW = ("derivatives", "sourcedata", "code")  # BIDS folders that hold no raw scans


@dataclass(frozen=True)
class Scan:
    """One scan to run: an image file (+ phase file) or a DICOM series (+ phase series)."""

    label: str  # what summary.csv and messages call it
    name: str  # stem of the output files
    path: Path | None = None
    phase_path: Path | None = None
    dicom: DicomScan | None = None
    stated: trained_range.Acquisition = trained_range.Acquisition()  # the user's word, where metadata is silent


@dataclass(frozen=True)
class Skipped:
    """A file or series the batch does not run, and why."""

    label: str
    reason: str


def image_files(directory) -> list[Path]:
    """Scans in ``directory`` (not recursive): .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd; a phase
    image that belongs to another scan of the folder is not a scan of its own."""
    files = sorted(p for p in Path(directory).iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.name.lower().endswith(scanfiles.IMAGE_SUFFIXES))
    partners = {phase_partner(p) for p in files} - {None}
    return [p for p in files if p not in partners]


def file_scan(path, phase_path=None, name: str | None = None, label: str | None = None) -> Scan:
    """The scan of an image file; its phase is ``phase_path`` or the partner file beside it.
    BIDS outputs are named after the entities without ``part-mag``."""
    path = Path(path)
    phase = phase_partner(path) if phase_path is None else Path(phase_path)
    default = scanfiles.scan_base(path) if scanfiles.is_bids_magnitude(path) else scanfiles.scan_name(path)
    return Scan(label or path.name, name or default, path=path, phase_path=phase)


def dicom_scan(scan: DicomScan) -> Scan:
    return Scan(scan.magnitude.label, scan.magnitude.name, dicom=scan)


def _folders(root: Path, exclude: set[Path]):
    for folder, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(folder) / d).resolve() not in exclude)
        yield Path(folder)


def find_scans(root, exclude=()) -> tuple[list[Scan], list[Skipped]]:
    """Image-file scans and DICOM scans under ``root`` (recursively; hidden folders and
    ``exclude`` skipped, and in a BIDS dataset its ``derivatives``, ``sourcedata`` and ``code``),
    and the files/series skipped with the reason."""
    root = Path(root)
    excluded = {Path(p).resolve() for p in exclude}
    if (root / scanfiles.BIDS_ROOT_FILE).is_file():
        excluded |= {(root / name).resolve() for name in BIDS_NOT_RAW}
    scans, skipped = [], []
    for folder in _folders(root, excluded):
        for path in image_files(folder):
            label = path.relative_to(root).as_posix()
            scans.append(file_scan(path, label=label))
        for path in sorted(folder.iterdir()):
            reason = imagefiles.unsupported_reason(path) if path.is_file() else None
            if reason:
                skipped.append(Skipped(path.relative_to(root).as_posix(), f"{path.name} is {reason}"))
    series, skipped_series = dicomseries.find_scans(root, excluded)
    scans += [dicom_scan(s) for s in series]
    skipped += [Skipped(s.label, s.reason) for s in skipped_series]
    return scans, skipped


def _read(scan: Scan, phase: bool):
    """(array, geometry, warnings, label) of the scan's magnitude or phase image; None if it has no phase."""
    if scan.dicom is not None:
        series = scan.dicom.phase if phase else scan.dicom.magnitude
        return None if series is None else (*series.read(), [], series.label)
    path = scan.phase_path if phase else scan.path
    return None if path is None else (*imagefiles.read_volume(path), path.name)


def acquisition(scan: Scan, echo: int | None) -> trained_range.Acquisition:
    """Field strength and echo time from the DICOM headers or the image file's JSON sidecar;
    what they do not give is taken from ``scan.stated``."""
    if scan.dicom is not None:
        found = scan.dicom.magnitude.acquisition(echo)
    else:
        found = sidecars.read_sidecar(scan.path, echo)
    return found.filled_from(scan.stated)


def load(scene, scan: Scan, echo: int | None):
    """Read ``scan`` into ``scene``: (magnitude volume node, phase volume node or None, warnings).

    A multi-echo scan gives echo ``echo`` (0-based) or, when None, all echoes combined. The
    magnitude node keeps the field strength and echo time its metadata gives (:mod:`.acquisition_info`)."""
    array, geometry, warnings, _ = _read(scan, phase=False)
    array, echo_warnings = imagefiles.pick_echo(array, echo, f"'{scan.label}'")
    volume = volumes.volume_from_array(scene, array, geometry, scan.name)
    acquisition_info.store(volume, acquisition(scan, echo))
    phase = _read(scan, phase=True)
    if phase is None:
        return volume, None, warnings + echo_warnings
    phase_array, phase_geometry, phase_warnings, label = phase
    phase_array = imagefiles.pick_phase_echo(phase_array, echo, f"'{label}'")
    phase_node = volumes.volume_from_array(scene, phase_array, phase_geometry, f"{scan.name} phase")
    return volume, phase_node, warnings + phase_warnings + echo_warnings
