"""JSON sidecars: the file's own (dcm2niix) and, inside a BIDS dataset, the ones it inherits."""

from __future__ import annotations

import json

import pytest

from CMBDetectorLib.sidecars import (applicable_sidecars, bids_name, bids_root, from_sidecar, read_sidecar,
                                     sidecar_path)
from CMBDetectorLib.trained_range import Acquisition

MAG = "sub-01_ses-1_part-mag_T2starw"


def write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_sidecar_beside_the_image(tmp_path):
    image = tmp_path / "sub-01_part-mag_T2starw.nii.gz"
    assert sidecar_path(image) == tmp_path / "sub-01_part-mag_T2starw.json"
    assert read_sidecar(image) == Acquisition()  # none
    sidecar_path(image).write_text(json.dumps({"MagneticFieldStrength": 3, "EchoTime": 0.05}))
    assert read_sidecar(image) == Acquisition(3.0, 50.0)
    sidecar_path(image).write_text("{not json")
    assert read_sidecar(image) == Acquisition()
    sidecar_path(image).write_text(json.dumps([1, 2]))
    assert read_sidecar(image) == Acquisition()
    # a multi-echo file's list of echo times (seconds), a missing or nonsensical field
    data = {"EchoTime": [0.01, 0.02, 0.03], "MagneticFieldStrength": "unknown"}
    assert from_sidecar(data, echo=0) == Acquisition(None, 10.0)
    assert from_sidecar(data).echo_time_ms == pytest.approx(20.0)
    assert from_sidecar({"EchoTime": -1, "MagneticFieldStrength": 0}) == Acquisition()


@pytest.mark.parametrize("name, expected", [
    (MAG, (frozenset({"sub-01", "ses-1", "part-mag"}), "T2starw")),
    ("T2starw", (frozenset(), "T2starw")),
    ("scan_mag", None),  # not BIDS: "scan" is no key-value entity
    ("dataset_description", None),
    ("sub-01_part-mag", None),  # no suffix
    ("sub-_T2starw", None),
])
def test_bids_names(name, expected):
    assert bids_name(name) == expected


def test_bids_inheritance_deeper_files_win_key_by_key(tmp_path):
    root = tmp_path / "study"
    image = root / "sub-01" / "ses-1" / "anat" / f"{MAG}.nii.gz"
    write(root / "T2starw.json", {"MagneticFieldStrength": 3, "EchoTime": 0.02})
    # not inherited: another suffix, another subject, the phase part, a file that is no sidecar
    write(root / "bold.json", {"EchoTime": 0.09})
    write(root / "sub-02_T2starw.json", {"EchoTime": 0.09})
    write(root / "part-phase_T2starw.json", {"EchoTime": 0.09})
    write(root / "participants.json", {"EchoTime": 0.09})
    assert bids_root(image) is None and read_sidecar(image) == Acquisition()  # outside a dataset: only X.json
    write(root / "dataset_description.json", {"Name": "study", "BIDSVersion": "1.9.0"})
    assert bids_root(image) == root.absolute()
    assert read_sidecar(image) == Acquisition(3.0, 20.0)
    write(root / "sub-01" / "sub-01_T2starw.json", {"EchoTime": 0.05})
    assert read_sidecar(image) == Acquisition(3.0, 50.0)
    write(root / "part-mag_T2starw.json", {"MagneticFieldStrength": 1.5})  # more entities: after T2starw.json
    write(sidecar_path(image), {"EchoTime": 0.03})
    assert read_sidecar(image) == Acquisition(1.5, 30.0)
    assert [p.name for p in applicable_sidecars(image)] == [
        "T2starw.json", "part-mag_T2starw.json", "sub-01_T2starw.json", f"{MAG}.json"]
    # the phase image inherits from part-phase, not part-mag (the field stays 3 T)
    phase = image.with_name(MAG.replace("part-mag", "part-phase") + ".nii.gz")
    assert [p.name for p in applicable_sidecars(phase)] == [
        "T2starw.json", "part-phase_T2starw.json", "sub-01_T2starw.json"]
    assert read_sidecar(phase) == Acquisition(3.0, 50.0)
    write(root / "part-mag_T2starw.json", "{broken")  # an unreadable one is skipped, the others still count
    assert read_sidecar(image) == Acquisition(3.0, 30.0)
