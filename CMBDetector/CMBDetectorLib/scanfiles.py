"""How a scan's files sit side by side on disk: ``X_mag.nii.gz`` (or ``X.nii.gz``) with its
phase image ``X_phase.nii.gz``, as written by the synthetic engine and most SWI exports."""

from __future__ import annotations

from pathlib import Path

PHASE_TAG = "_phase"


def scan_base(path) -> str:
    """The scan's name without ``.nii[.gz]`` and without a trailing ``_mag``."""
    stem = Path(path).name.split(".nii")[0]
    return stem[:-4] if stem.endswith("_mag") else stem


def is_phase_file(path) -> bool:
    return Path(path).name.split(".nii")[0].endswith(PHASE_TAG)


def phase_partner(path) -> Path | None:
    """The phase image beside magnitude image ``path`` (``X_phase.nii[.gz]``), or None."""
    path = Path(path)
    if is_phase_file(path):
        return None
    for suffix in (".nii.gz", ".nii"):
        candidate = path.with_name(f"{scan_base(path)}{PHASE_TAG}{suffix}")
        if candidate.is_file():
            return candidate
    return None
