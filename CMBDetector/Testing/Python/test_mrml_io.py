"""Real-world inputs and outputs of the headless CLI and the Logic: truncated files, output
permissions and locations, warnings users see, reviewed files kept on a re-run, DICOM series
(magnitude + phase, multi-echo), BIDS names, SIGTERM mid-batch, 2D/4D messages.

The detector is the ``fake_detect`` stand-in (or a slow fake in a CLI subprocess): these tests
are about files, not detection quality.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectorLib import pipeline
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry, read_image, write_image
from CMBDetectorLib.validation import prepare_input
from CMBDetectorLib.trained_range import Acquisition
from CMBDetectorMRML import acquisition_info, runwarnings, volumes
from CMBDetectorMRML.__main__ import main as cli_main
from CMBDetectorMRML.logic import CMBDetectorLogic
from CMBDetectorMRML.scene import new_scene
from conftest import write_dicom_series

MODULE_DIR = Path(__file__).resolve().parents[2]
SAMPLE_MAG = MODULE_DIR / "Resources" / "SampleData" / "SampleSWI_mag.nii.gz"
SAMPLE_PHASE = MODULE_DIR / "Resources" / "SampleData" / "SampleSWI_phase.nii.gz"
GEOMETRY = Geometry.from_parts(spacing=(0.9, 0.9, 2.0), origin=(90.0, -110.0, -40.0),
                               direction=np.diag([-1.0, 1.0, 1.0]))
SHAPE = (20, 32, 32)
IJK = [(5.0, 6.0, 4.0), (20.0, 10.0, 8.0)]

# A CLI run in a subprocess with a fake detector that sleeps SECONDS per scan (no torch import).
CLI_WRAPPER = """
import sys, time, types
sys.path.insert(0, {module_dir!r})
import CMBDetectorLib
from CMBDetectorLib.results import DetectionResult
fake = types.ModuleType("CMBDetectorLib.pipeline")
def detect(array, geometry, config=None, mask=None, progress=None, cancel=None, phase=None, acquisition=None):
    time.sleep(float(sys.argv[1]))
    return DetectionResult([], geometry)
fake.detect = detect
sys.modules["CMBDetectorLib.pipeline"] = CMBDetectorLib.pipeline = fake
from CMBDetectorMRML.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_scans(folder: Path, n: int, prefix: str = "scan") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in range(n):
        path = folder / f"{prefix}{m + 1}.nii.gz"
        write_image(path, np.random.default_rng(100_000 + m).uniform(20, 300, SHAPE).astype(np.float32), GEOMETRY)
        paths.append(path)
    return paths


def cli_subprocess(tmp: Path, seconds: float, args: list[str], prefix=()) -> subprocess.Popen:
    script = tmp / "cli_with_fake_detector.py"
    script.write_text(CLI_WRAPPER.format(module_dir=str(MODULE_DIR)))
    env = {**os.environ, "YOLO_OFFLINE": "1", "HOME": str(tmp)}
    return subprocess.Popen([*prefix, sys.executable, str(script), str(seconds), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lower_half_bytes(data: bytes) -> bytes:
    return data[: len(data) // 2]


# --- 1. truncated scans -----------------------------------------------------------------------------

def test_truncated_nifti_and_gzip_are_refused_by_name(tmp_path, fake_detect):
    calls = fake_detect(IJK)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "t.nii.gz").write_bytes(lower_half_bytes(SAMPLE_MAG.read_bytes()))
    (folder / "half.nii").write_bytes(lower_half_bytes(gzip.decompress(SAMPLE_MAG.read_bytes())))
    for name in ("t.nii.gz", "half.nii"):
        with pytest.raises(CMBDetectorError, match=rf"{name}' is truncated"):
            CMBDetectorLogic().processFile(folder / name, tmp_path / "out")
    batch = CMBDetectorLogic().processDirectory(folder, tmp_path / "out")
    assert [(o.file, o.status) for o in batch.outcomes] == [("half.nii", "failed"), ("t.nii.gz", "failed")]
    assert "header describes" in batch.outcomes[0].error and "gzip stream ends early" in batch.outcomes[1].error
    assert not calls
    # the whole file still reads
    full = folder / "full.nii"
    full.write_bytes(gzip.decompress(SAMPLE_MAG.read_bytes()))
    assert CMBDetectorLogic().processFile(full, tmp_path / "out").n_detections == len(IJK)


# --- 2. output permissions --------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_outputs_get_the_normal_mode_under_the_umask(tmp_path, fake_detect, umask, mode):
    fake_detect(IJK)
    write_scans(tmp_path / "in", 1)
    previous = os.umask(umask)
    try:
        for _ in range(2):  # a rewritten summary keeps the mode too
            CMBDetectorLogic().processDirectory(tmp_path / "in", tmp_path / "out", overwrite=True)
            modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
            assert modes == {"scan1.csv": mode, "scan1.mrk.json": mode, "scan1_counts.csv": mode,
                             "scan1_report.html": mode, "summary.csv": mode}
    finally:
        os.umask(previous)


# --- 3. warnings the user sees --------------------------------------------------------------------

def test_warnings_are_printed_and_kept_in_every_output(tmp_path, fake_detect, monkeypatch, capsys):
    fake_detect(IJK)
    fake = pipeline.detect

    def detect_with_real_checks(array, geometry, **kwargs):  # the real input checks' warnings
        result = fake(array, geometry, **kwargs)
        result.warnings.extend(prepare_input(array, geometry).warnings)
        return result

    monkeypatch.setattr(pipeline, "detect", detect_with_real_checks)
    array = np.random.default_rng(100_010).uniform(20, 300, SHAPE).astype(np.float32)
    array[2, 3, 4:7] = np.nan  # the NIfTI reader turns these into 0 before any check sees them
    array[5, 5, 5] = -7.0
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "nan.nii.gz", array, GEOMETRY)
    assert cli_main([str(folder / "nan.nii.gz"), str(tmp_path / "one")]) == 0
    printed = capsys.readouterr().err
    assert "Warning: nan.nii.gz: 3 voxels are NaN or infinite" in printed
    assert "negative intensities" in printed
    sidecar = (tmp_path / "one" / "nan.warnings.txt").read_text().splitlines()
    assert len(sidecar) == 2 and "NaN" in sidecar[0] and "negative" in sidecar[1]

    headless = new_scene()
    node = headless.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    import slicer

    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    storage.SetFileName(str(tmp_path / "one" / "nan.mrk.json"))
    assert storage.ReadData(node)
    assert runwarnings.load(node) == sidecar

    assert cli_main([str(folder), str(tmp_path / "batch")]) == 0
    assert "WARNING nan.nii.gz: nan.nii.gz: 3 voxels" in capsys.readouterr().err
    (row,) = read_csv(tmp_path / "batch" / "summary.csv")
    assert row["warnings"].split(" | ") == sidecar
    # a re-run without warnings removes the stale sidecar
    write_image(folder / "nan.nii.gz", np.nan_to_num(np.abs(array)) + 1, GEOMETRY)
    assert cli_main([str(folder / "nan.nii.gz"), str(tmp_path / "one")]) == 0
    assert not (tmp_path / "one" / "nan.warnings.txt").exists()


def test_scans_outside_the_trained_ranges_are_warned_with_what_lies_outside(tmp_path, fake_detect, capsys):
    calls = fake_detect(IJK)
    folder = tmp_path / "in"
    long_te, plain = write_scans(folder, 2)
    (folder / "scan1.json").write_text(json.dumps({"MagneticFieldStrength": 3, "EchoTime": 0.05}))  # dcm2niix
    (folder / "scan2.json").write_text(json.dumps({"MagneticFieldStrength": 1.494, "EchoTime": 0.025}))
    write_image(folder / "thick.nii.gz", np.ones(SHAPE, np.float32),
                Geometry.from_parts(spacing=(0.9, 0.9, 3.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3)))
    seven_t = sitk.GetImageFromArray(np.random.default_rng(100_031).uniform(50, 300, SHAPE).astype(np.int16))
    seven_t.SetSpacing((0.9, 0.9, 2.0))
    write_dicom_series(folder / "dicom", seven_t, 7, "ORIGINAL\\PRIMARY\\M\\ND", echo_times_ms=(20.0,),
                       field_strength_t=7.0)
    assert cli_main([str(folder), str(tmp_path / "out")]) == 0
    assert len(calls) == 4 and "outside the acquisitions the models were trained on" in capsys.readouterr().err
    rows = {r["file"]: r for r in read_csv(tmp_path / "out" / "summary.csv")}
    assert sorted(rows) == ["dicom: series 7 'SWI_Images'", "scan1.nii.gz", "scan2.nii.gz", "thick.nii.gz"]
    assert "(echo time 50 ms (trained on 15-40 ms))" in rows["scan1.nii.gz"]["warnings"]
    assert rows["scan2.nii.gz"]["warnings"] == ""
    assert "(slices 3.0 mm thick, between the 1-2 mm 3D" in rows["thick.nii.gz"]["warnings"]
    assert "(field strength 7 T (trained on 1.5 and 3 T))" in rows["dicom: series 7 'SWI_Images'"]["warnings"]
    kept = (tmp_path / "out" / "scan1.warnings.txt").read_text()
    assert "echo time 50 ms" in kept and not (tmp_path / "out" / "scan2.warnings.txt").exists()


def test_stated_field_strength_and_echo_time_fill_in_what_the_metadata_does_not_say(tmp_path, fake_detect, capsys):
    fake_detect(IJK)
    folder = tmp_path / "in"
    plain, described = write_scans(folder, 2)
    (folder / "scan2.json").write_text(json.dumps({"EchoTime": 0.02}))  # its own TE wins; no field given
    assert cli_main([str(folder), str(tmp_path / "out"), "--echo-time", "50", "--field-strength", "7"]) == 0
    rows = {r["file"]: r["warnings"] for r in read_csv(tmp_path / "out" / "summary.csv")}
    assert "field strength 7 T" in rows["scan1.nii.gz"] and "echo time 50 ms" in rows["scan1.nii.gz"]
    assert "field strength 7 T" in rows["scan2.nii.gz"] and "echo time" not in rows["scan2.nii.gz"]
    assert cli_main([str(plain), str(tmp_path / "one"), "--field-strength", "3", "--echo-time", "20"]) == 0
    assert not (tmp_path / "one" / "scan1.warnings.txt").exists()
    capsys.readouterr()
    for bad in (["--echo-time", "0"], ["--field-strength", "-3"], ["--field-strength", "30"]):
        with pytest.raises(SystemExit) as stop:
            cli_main([str(plain), str(tmp_path / "bad"), *bad])
        assert stop.value.code == 2 and bad[0] in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_volume_node_carries_its_acquisition_into_the_run(scene, fake_detect):
    fake_detect(IJK)
    volume = volumes.volume_from_array(scene, np.ones(SHAPE, np.float32), GEOMETRY, "swi")
    assert acquisition_info.read(volume) == Acquisition()
    result = CMBDetectorLogic().process(volume).result
    assert result.warnings == []
    acquisition_info.store(volume, Acquisition(7.0, None))
    assert volume.GetAttribute("CMBDetector.FieldStrengthT") == "7"
    out = CMBDetectorLogic().process(volume)
    (warning,) = out.result.warnings
    assert "field strength 7 T" in warning and runwarnings.load(out.fiducialNode) == [warning]
    acquisition_info.store(volume, Acquisition(None, 20.0))  # the field is no longer known
    assert acquisition_info.read(volume) == Acquisition(None, 20.0)


def test_a_volume_loaded_from_a_file_in_slicer_gets_its_sidecars(scene, tmp_path, fake_detect):
    """Add Data keeps the file's path in a storage node; its JSON sidecar (BIDS inheritance
    included) gives what the node's attributes do not."""
    fake_detect(IJK)
    volume = volumes.volume_from_array(scene, np.ones(SHAPE, np.float32), GEOMETRY, "swi")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    volume.SetAndObserveStorageNodeID(storage.GetID())
    assert acquisition_info.read(volume) == Acquisition()  # a storage node without a file
    storage.SetFileName(str(tmp_path / "sub-01" / "anat" / "sub-01_T2starw.nii.gz"))
    assert acquisition_info.read(volume) == Acquisition()  # no sidecar
    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "study"}))
    (tmp_path / "T2starw.json").write_text(json.dumps({"MagneticFieldStrength": 7, "EchoTime": 0.01}))
    assert acquisition_info.read(volume) == Acquisition(7.0, 10.0)
    (warning,) = CMBDetectorLogic().process(volume).result.warnings
    assert "field strength 7 T" in warning and "echo time 10 ms" in warning
    acquisition_info.store(volume, Acquisition(3.0, None))  # the node's own word wins
    assert acquisition_info.read(volume) == Acquisition(3.0, 10.0)


def test_a_batch_reads_inherited_metadata(tmp_path):
    """The headless batch's scans get the inherited field strength and echo time."""
    from CMBDetectorMRML import scans

    root = tmp_path / "study"
    image = root / "sub-01" / "anat" / "sub-01_part-mag_T2starw.nii.gz"
    image.parent.mkdir(parents=True)
    sitk.WriteImage(sitk.Image(8, 8, 4, sitk.sitkFloat32), str(image))
    (root / "dataset_description.json").write_text(json.dumps({"Name": "study", "BIDSVersion": "1.9.0"}))
    (root / "T2starw.json").write_text(json.dumps({"MagneticFieldStrength": 7, "EchoTime": 0.01}))
    (scan,), _ = scans.find_scans(root)
    assert scans.acquisition(scan, None) == Acquisition(7.0, 10.0)


class DicomDatabase:
    """What the module reads of Slicer's ``slicer.dicomDatabase`` (ctkDICOMDatabase): the file
    of an instance UID and a tag's value in a file (the application is not available here)."""

    def __init__(self, files: dict, values: dict):
        self.files, self.values = files, values

    def fileForInstance(self, uid):
        return self.files.get(uid, "")

    def fileValue(self, path, tag):
        return self.values.get((path, tag), "")


def test_a_volume_loaded_from_dicom_in_slicer_is_looked_up_in_the_database(scene):
    volume = volumes.volume_from_array(scene, np.ones(SHAPE, np.float32), GEOMETRY, "swi")
    database = DicomDatabase({"1.2.3.1": "/db/a.dcm"}, {("/db/a.dcm", "0018,0087"): "2.89",
                                                       ("/db/a.dcm", "0018,0081"): "45"})
    assert acquisition_info.read(volume, database) == Acquisition()  # not loaded from DICOM
    volume.SetAttribute("DICOM.instanceUIDs", "1.2.3.1 1.2.3.2")
    assert acquisition_info.read(volume, database) == Acquisition(2.89, 45.0)
    assert acquisition_info.read(volume, None) == Acquisition()
    acquisition_info.store(volume, Acquisition(None, 20.0))  # what the node says wins
    assert acquisition_info.read(volume, database) == Acquisition(2.89, 20.0)
    volume.SetAttribute("DICOM.instanceUIDs", "9.9")  # files no longer in the database
    assert acquisition_info.read(volume, database) == Acquisition(None, 20.0)
    volume.SetAttribute("DICOM.instanceUIDs", "1.2.3.1")
    assert acquisition_info.read(volume, object()) == Acquisition(None, 20.0)  # a database that cannot answer


# --- 4. unusable output locations -----------------------------------------------------------------

def test_output_that_is_a_file_is_refused_before_any_work(tmp_path, fake_detect, capsys):
    calls = fake_detect(IJK)
    (scan,) = write_scans(tmp_path / "in", 1)
    target = tmp_path / "results.csv"
    target.write_text("mine")
    for source in (scan, tmp_path / "in"):
        assert cli_main([str(source), str(target)]) == 2
        err = capsys.readouterr().err
        assert f"'{target}' is a file" in err and "Traceback" not in err
    assert not calls and target.read_text() == "mine"


def test_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    write_scans(tmp_path / "in", 2)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all", "--"]
    process = cli_subprocess(tmp_path, 0.0, [str(tmp_path / "in"), str(locked)], prefix=prefix)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert f"Cannot write to the output folder '{locked}'" in err and "Traceback" not in err
    assert list(locked.iterdir()) == []


def test_write_failure_mid_batch_is_reported_per_scan(tmp_path, fake_detect, capsys):
    fake_detect(IJK)
    write_scans(tmp_path / "in", 3)
    out = tmp_path / "out"
    (out / "scan2.csv").mkdir(parents=True)  # scan2's CSV cannot be written
    assert cli_main([str(tmp_path / "in"), str(out)]) == 1
    assert "FAILED scan2.nii.gz: Cannot write the results of 'scan2.nii.gz'" in capsys.readouterr().err
    rows = read_csv(out / "summary.csv")
    assert [(r["file"], r["status"]) for r in rows] == [
        ("scan1.nii.gz", "ok"), ("scan2.nii.gz", "failed"), ("scan3.nii.gz", "ok")]
    assert (out / "scan3.mrk.json").exists()
    # summary.csv itself unwritable: every scan still runs, the CLI says so and exits 1
    (tmp_path / "out2" / "summary.csv").mkdir(parents=True)
    assert cli_main([str(tmp_path / "in"), str(tmp_path / "out2")]) == 1
    assert f"Cannot write '{tmp_path / 'out2' / 'summary.csv'}'" in capsys.readouterr().err
    assert all((tmp_path / "out2" / f"scan{m}.mrk.json").exists() for m in (1, 2, 3))


# --- 5. a reviewed .mrk.json is never overwritten -------------------------------------------------

def test_rerun_keeps_a_reviewed_markups_file(tmp_path, fake_detect, capsys):
    fake_detect(IJK)
    folder, out = tmp_path / "in", tmp_path / "out"
    write_scans(folder, 2)
    assert cli_main([str(folder), str(out)]) == 0
    logic = CMBDetectorLogic()
    headless = new_scene()
    import slicer

    node = headless.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    storage.SetFileName(str(out / "scan1.mrk.json"))
    assert storage.ReadData(node)
    logic.setPointStatus(node, 0, "accepted")
    logic.setPointStatus(node, 1, "rejected")
    logic.saveMarkups(node, out / "scan1.mrk.json")
    reviewed = (out / "scan1.mrk.json").read_bytes()
    unreviewed = (out / "scan2.mrk.json").stat().st_mtime_ns

    assert cli_main([str(folder), str(out)]) == 0
    assert (out / "scan1.mrk.json").read_bytes() == reviewed
    assert (out / "scan1-run2.mrk.json").exists() and (out / "scan1-run2.csv").exists()
    assert not (out / "scan2-run2.mrk.json").exists() and (out / "scan2.mrk.json").stat().st_mtime_ns >= unreviewed
    assert "holds a review" in capsys.readouterr().err
    assert "scan1-run2.mrk.json" in read_csv(out / "summary.csv")[0]["warnings"]

    # the scan now fails: its row says the old results are still there
    (folder / "scan2.nii.gz").write_bytes(b"not an image")
    assert cli_main([str(folder), str(out)]) == 1
    row = read_csv(out / "summary.csv")[1]
    assert row["status"] == "failed" and "files from an earlier run remain: scan2.mrk.json, scan2.csv" in row["error"]

    assert cli_main([str(folder / "scan1.nii.gz"), str(out), "--overwrite"]) == 0
    assert (out / "scan1.mrk.json").read_bytes() != reviewed


# --- 6. DICOM series, multi-echo, unsupported formats ---------------------------------------------

def test_dicom_magnitude_and_phase_series_are_paired_and_read_in_place(tmp_path, fake_detect):
    calls = fake_detect(IJK)
    magnitude, phase = sitk.ReadImage(str(SAMPLE_MAG)), sitk.ReadImage(str(SAMPLE_PHASE))
    folder = tmp_path / "dicom"
    write_dicom_series(folder / "study" / "s5", magnitude, 5, "ORIGINAL\\PRIMARY\\M\\ND")
    write_dicom_series(folder / "study" / "s6", phase, 6, "ORIGINAL\\PRIMARY\\P\\ND")
    (folder / "brain.mgz").write_bytes(b"\x00" * 64)
    batch = CMBDetectorLogic().processDirectory(folder, tmp_path / "out")
    by_status = {o.status: o for o in batch.outcomes}
    assert sorted(by_status) == ["ok", "skipped"] and len(batch.outcomes) == 2
    assert by_status["ok"].file == "study/s5: series 5 'SWI_Images'"
    assert "mri_convert" in by_status["skipped"].error and by_status["skipped"].file == "brain.mgz"
    assert [r["status"] for r in read_csv(tmp_path / "out" / "summary.csv")] == ["skipped", "ok"]
    assert (tmp_path / "out" / "S005_SWI_Images.mrk.json").exists()
    (call,) = calls
    expected, geometry = read_image(SAMPLE_MAG)
    np.testing.assert_array_equal(call["array"], expected)
    np.testing.assert_allclose(call["geometry"].ijk_to_ras, geometry.ijk_to_ras, atol=1e-3)
    np.testing.assert_array_equal(call["phase"], read_image(SAMPLE_PHASE)[0])


def test_multi_echo_dicom_uses_the_chosen_echo(tmp_path, fake_detect, capsys):
    calls = fake_detect(IJK)
    rng = np.random.default_rng(100_020)
    echoes = [rng.uniform(100, 300, SHAPE).astype(np.int16), rng.uniform(20, 100, SHAPE).astype(np.int16)]
    phases = [rng.uniform(-4000, 4000, SHAPE).astype(np.int16) for _ in range(2)]
    mags, phs = [sitk.GetImageFromArray(a) for a in echoes], [sitk.GetImageFromArray(a) for a in phases]
    for image in mags + phs:
        image.SetSpacing((0.9, 0.9, 2.0))
    write_dicom_series(tmp_path / "in", mags[0], 3, "ORIGINAL\\PRIMARY\\M\\ND", echoes=mags, uid="1.2.3.3")
    write_dicom_series(tmp_path / "in", phs[0], 4, "ORIGINAL\\PRIMARY\\P\\ND", echoes=phs, uid="1.2.3.4")
    assert cli_main([str(tmp_path / "in"), str(tmp_path / "out"), "--echo", "1"]) == 0
    np.testing.assert_array_equal(calls[-1]["array"], echoes[1])
    np.testing.assert_array_equal(calls[-1]["phase"], phases[1])
    # all echoes combined: the phase cannot be, so the scan fails with the fix named
    assert cli_main([str(tmp_path / "in"), str(tmp_path / "out2")]) == 1
    assert "pass --echo N" in read_csv(tmp_path / "out2" / "summary.csv")[0]["error"]
    capsys.readouterr()


# --- 7. SIGTERM mid-batch -------------------------------------------------------------------------

def test_sigterm_stops_a_batch_like_ctrl_c(tmp_path):
    write_scans(tmp_path / "in", 4)
    out = tmp_path / "out"
    process = cli_subprocess(tmp_path, 1.5, [str(tmp_path / "in"), str(out)])
    deadline = time.monotonic() + 60
    while not (out / "summary.csv").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Stopped by SIGTERM" in err and "Traceback" not in err
    rows = read_csv(out / "summary.csv")
    statuses = [r["status"] for r in rows]
    assert [r["file"] for r in rows] == [f"scan{m}.nii.gz" for m in (1, 2, 3, 4)]
    assert statuses[0] == "ok" and statuses[-1] == "not run" and set(statuses) == {"ok", "not run"}
    for row in rows:
        assert (out / row["file"].replace(".nii.gz", ".mrk.json")).exists() == (row["status"] == "ok")


# --- 8. 2D and 4D files ---------------------------------------------------------------------------

def test_2d_and_4d_files_get_messages_with_the_file_and_the_fix(tmp_path, fake_detect, capsys):
    calls = fake_detect(IJK)
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((64, 64), np.float32)), str(tmp_path / "slice.nii.gz"))
    assert cli_main([str(tmp_path / "slice.nii.gz"), str(tmp_path / "out")]) == 2
    assert "'slice.nii.gz' is a single 2D slice" in capsys.readouterr().err
    echoes = np.random.default_rng(100_030).uniform(20, 300, (3, *SHAPE)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(echoes, isVector=False), str(tmp_path / "me.nii.gz"))
    assert cli_main([str(tmp_path / "me.nii.gz"), str(tmp_path / "out"), "--echo", "5"]) == 2
    assert "'me.nii.gz' has 3 echoes; pass --echo N with N from 0" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "me.nii.gz"), str(tmp_path / "out"), "--echo", "2"]) == 0
    np.testing.assert_array_equal(calls[-1]["array"], echoes[2])
    assert cli_main([str(tmp_path / "me.nii.gz"), str(tmp_path / "out")]) == 0
    np.testing.assert_allclose(calls[-1]["array"], np.sqrt((echoes ** 2).sum(axis=0)), rtol=1e-5)
    assert "Combined 3 echoes" in capsys.readouterr().err
    fmri = sitk.GetImageFromArray(np.ones((40, 8, 8, 8), np.float32), isVector=False)
    sitk.WriteImage(fmri, str(tmp_path / "fmri.nii.gz"))
    assert cli_main([str(tmp_path / "fmri.nii.gz"), str(tmp_path / "out")]) == 2
    assert "'fmri.nii.gz' holds 40 volumes along its 4th axis" in capsys.readouterr().err
    (tmp_path / "brain.mgz").write_bytes(b"\x00" * 64)
    assert cli_main([str(tmp_path / "brain.mgz"), str(tmp_path / "out")]) == 2
    assert "'brain.mgz' is a FreeSurfer MGH image" in capsys.readouterr().err


# --- BIDS -----------------------------------------------------------------------------------------

def test_bids_dataset_runs_without_renaming(tmp_path, fake_detect):
    calls = fake_detect(IJK)
    anat = tmp_path / "bids" / "sub-01" / "ses-01" / "anat"
    (mag,) = write_scans(anat, 1)
    mag.rename(anat / "sub-01_ses-01_part-mag_T2starw.nii.gz")
    phase = np.random.default_rng(100_040).uniform(-np.pi, np.pi, SHAPE).astype(np.float32)
    write_image(anat / "sub-01_ses-01_part-phase_T2starw.nii.gz", phase, GEOMETRY)
    (other,) = write_scans(tmp_path / "bids" / "sub-02" / "anat", 1)
    other.rename(other.with_name("sub-02_part-mag_T2starw.nii.gz"))
    (tmp_path / "bids" / "dataset_description.json").write_text("{}")
    write_scans(tmp_path / "bids" / "derivatives" / "other", 1)  # not raw data: not a scan
    write_scans(tmp_path / "bids" / "sourcedata", 1)
    out = tmp_path / "bids" / "derivatives" / "cmbdetector"  # inside the dataset: not read as input
    batch = CMBDetectorLogic().processDirectory(tmp_path / "bids", out)
    assert [(o.file, o.status) for o in batch.outcomes] == [
        ("sub-01/ses-01/anat/sub-01_ses-01_part-mag_T2starw.nii.gz", "ok"),
        ("sub-02/anat/sub-02_part-mag_T2starw.nii.gz", "ok")]
    np.testing.assert_allclose(calls[0]["phase"], phase)
    assert calls[1]["phase"] is None
    assert sorted(p.name for p in out.iterdir()) == [
        "sub-01_ses-01_T2starw.csv", "sub-01_ses-01_T2starw.mrk.json", "sub-01_ses-01_T2starw_counts.csv",
        "sub-01_ses-01_T2starw_report.html", "sub-02_T2starw.csv", "sub-02_T2starw.mrk.json",
        "sub-02_T2starw_counts.csv", "sub-02_T2starw_report.html", "summary.csv"]
    assert CMBDetectorLogic().processDirectory(tmp_path / "bids", out).failed == []
