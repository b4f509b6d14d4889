"""The acquisition an image file's JSON sidecars describe (dcm2niix, BIDS).

dcm2niix writes ``X.json`` beside ``X.nii.gz``. In a BIDS dataset (a folder holding
``dataset_description.json``) metadata may also sit higher up and apply to every file below it
whose name carries all of the sidecar's entities and the same suffix (the BIDS inheritance
principle): ``T2starw.json`` at the root, ``sub-01/sub-01_T2starw.json``, then the file's own;
the deeper file wins key by key.
"""

from __future__ import annotations

import json
from pathlib import Path

from .scanfiles import BIDS_ROOT_FILE, scan_name
from .trained_range import Acquisition, echo_time_ms, positive_number


def from_sidecar(data: dict, echo: int | None = None) -> Acquisition:
    """The acquisition a sidecar's keys describe: ``MagneticFieldStrength`` (T) and
    ``EchoTime`` (seconds; a list for a multi-echo file)."""
    times = data.get("EchoTime")
    times = times if isinstance(times, list) else [times]
    seconds = echo_time_ms(times, echo if len(times) > 1 else None)
    return Acquisition(positive_number(data.get("MagneticFieldStrength")), None if seconds is None else seconds * 1e3)


def sidecar_path(image_path) -> Path:
    """``X.json`` beside ``X.nii.gz`` (or any image suffix)."""
    path = Path(image_path)
    return path.with_name(scan_name(path) + ".json")


def bids_name(name: str) -> tuple[frozenset, str] | None:
    """(entities as ``key-value`` strings, suffix) of a BIDS file name without extension; None
    when the name is not one (``sub-01_part-mag_T2starw`` -> ({sub-01, part-mag}, T2starw))."""
    *entities, suffix = name.split("_")
    if not suffix or "-" in suffix or any(e.count("-") != 1 or e.startswith("-") or e.endswith("-") for e in entities):
        return None
    return frozenset(entities), suffix


def bids_root(image_path) -> Path | None:
    """The BIDS dataset folder holding ``image_path``: the nearest folder above it with
    ``dataset_description.json``; None outside a dataset."""
    for folder in Path(image_path).absolute().parents:
        if (folder / BIDS_ROOT_FILE).is_file():
            return folder
    return None


def applicable_sidecars(image_path) -> list[Path]:
    """The JSON files whose metadata applies to ``image_path``, least specific first: its own
    ``X.json``, and inside a BIDS dataset every sidecar it inherits from the folders above."""
    path = Path(image_path).absolute()
    own, root, name = sidecar_path(path), bids_root(path), bids_name(scan_name(path))
    if root is None or name is None:
        return [own] if own.is_file() else []
    entities, suffix = name
    found = []
    folders = [path.parent, *path.parent.parents]
    for depth, folder in enumerate(reversed(folders[: folders.index(root) + 1])):
        for candidate in sorted(folder.glob("*.json")):
            parsed = bids_name(candidate.stem)
            if parsed is not None and parsed[1] == suffix and parsed[0] <= entities:
                found.append((depth, len(parsed[0]), candidate))
    return [candidate for _, _, candidate in sorted(found)]


def read_sidecar(image_path, echo: int | None = None) -> Acquisition:
    """The acquisition the sidecars of ``image_path`` describe (:func:`applicable_sidecars`,
    merged key by key); nothing known when there is none or it cannot be read (the sidecar only
    informs a warning)."""
    merged = {}
    for path in applicable_sidecars(image_path):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            merged.update(data)
    return from_sidecar(merged, echo)
