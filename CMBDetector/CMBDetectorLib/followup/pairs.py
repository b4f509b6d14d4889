"""Which files form baseline / follow-up pairs for a batch comparison.

Folder rule: scans named ``<subject>_<visit>.nii.gz`` (or ``<subject>_<visit>_mag.nii.gz``, phase
``<subject>_<visit>_phase.nii.gz`` beside it); per subject the visits sort by name (``v1`` <
``v2``, ``20240105`` < ``20240712``), the first is the baseline and every later visit is
compared with it. Or a CSV with columns ``baseline,followup`` (optional ``name``), paths relative
to the CSV's folder.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import CMBDetectorError
from ..scanfiles import IMAGE_SUFFIXES, is_phase_file, scan_base


@dataclass(frozen=True)
class VisitPair:
    name: str
    baseline: Path
    followup: Path


def pairs_in_folder(folder) -> list[VisitPair]:
    """Pairs named by the folder rule; raises ``CMBDetectorError`` when none fit it."""
    folder = Path(folder)
    visits = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or is_phase_file(path):
            continue
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        subject, sep, visit = scan_base(path).rpartition("_")
        if sep and subject and visit:
            visits[subject].append((visit, path))
    pairs = []
    for subject, scans in sorted(visits.items()):
        scans.sort()
        pairs += [VisitPair(f"{subject}_{visit}", scans[0][1], path) for visit, path in scans[1:]]
    if not pairs:
        raise CMBDetectorError(
            f"No baseline/follow-up pairs in '{folder}': name the scans <subject>_<visit>.nii.gz "
            "(two or more visits per subject) or give a pairs CSV (columns baseline,followup).")
    return pairs


def pairs_from_csv(path) -> list[VisitPair]:
    """Pairs listed in a CSV (``baseline,followup[,name]``)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise CMBDetectorError(f"Cannot read the pairs CSV '{path}': {exc}") from exc
    if not rows or not {"baseline", "followup"} <= set(rows[0]):
        raise CMBDetectorError(f"'{path}' needs the columns baseline,followup (and optionally name), one pair a row.")
    out = []
    for n, row in enumerate(rows, start=1):
        base, follow = path.parent / row["baseline"].strip(), path.parent / row["followup"].strip()
        name = (row.get("name") or "").strip() or scan_base(follow)
        out.append(VisitPair(name if name not in {p.name for p in out} else f"{name}_{n}", base, follow))
    return out
