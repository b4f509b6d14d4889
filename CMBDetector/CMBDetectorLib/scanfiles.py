"""How a scan's files sit side by side on disk: ``X_mag.nii.gz`` (or ``X.nii.gz``) with its
phase image ``X_phase.nii.gz``, as written by the synthetic engine and most SWI exports, or a
BIDS pair ``sub-01_part-mag_T2starw.nii.gz`` + ``sub-01_part-phase_T2starw.nii.gz``."""

from __future__ import annotations

from pathlib import Path

PHASE_TAG = "_phase"
BIDS_MAGNITUDE, BIDS_PHASE = "part-mag", "part-phase"
BIDS_ROOT_FILE = "dataset_description.json"  # marks the top folder of a BIDS dataset
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def scan_name(path) -> str:
    """File name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _entities(path) -> list[str]:
    """The name without its image suffix, split at ``_`` (BIDS entities and suffix)."""
    return scan_name(path).split("_")


def is_bids_magnitude(path) -> bool:
    return BIDS_MAGNITUDE in _entities(path)


def scan_base(path) -> str:
    """The scan's name without its image suffix and without a trailing ``_mag`` (or BIDS ``part-mag``):
    the name its outputs and follow-up pairs go by."""
    entities = [e for e in _entities(path) if e != BIDS_MAGNITUDE]
    stem = "_".join(entities)
    return stem[:-4] if stem.endswith("_mag") else stem


def is_phase_file(path) -> bool:
    entities = _entities(path)
    return "_".join(entities).endswith(PHASE_TAG) or BIDS_PHASE in entities


def phase_partner(path) -> Path | None:
    """The phase image beside magnitude image ``path`` (``X_phase.nii[.gz]``, or the BIDS
    ``part-phase`` file of a ``part-mag`` one), or None."""
    path = Path(path)
    if is_phase_file(path):
        return None
    entities = _entities(path)
    if BIDS_MAGNITUDE in entities:
        stem = "_".join(BIDS_PHASE if e == BIDS_MAGNITUDE else e for e in entities)
    else:
        stem = f"{scan_base(path)}{PHASE_TAG}"
    for suffix in (".nii.gz", ".nii"):
        candidate = path.with_name(f"{stem}{suffix}")
        if candidate.is_file():
            return candidate
    return None
