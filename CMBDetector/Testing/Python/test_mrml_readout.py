"""Read-out of a reviewed scan: definite/possible counts, size and location classes, pattern,
the counts table node, the counts CSV, summary.csv columns and the one-page report."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from CMBDetectorLib.geometry import Geometry, write_image
from CMBDetectorMRML import readout, report_page, volumes
from CMBDetectorMRML.logic import CMBDetectorLogic

GEOMETRY = Geometry.from_parts(spacing=(0.9, 0.9, 2.0), origin=(90.0, -110.0, -40.0),
                               direction=np.diag([-1.0, 1.0, 1.0]))
SHAPE = (20, 40, 40)
IJK = [(8.0, 9.0, 4.0), (24.0, 12.0, 8.0), (14.0, 28.0, 15.0), (30.0, 30.0, 2.0)]
DIAMETERS = [3.0, 6.0, 12.0, 2.0]
LOCATIONS = ["lobar", "deep", "lobar", "infratentorial"]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def reviewed(scene, fake_detect):
    """CMB-1 accepted (lobar, 3 mm), CMB-2 pending (deep, 6 mm), CMB-3 accepted but 12 mm,
    CMB-4 rejected (infratentorial)."""
    fake_detect(IJK, diameters=DIAMETERS, locations=LOCATIONS)
    array = np.random.default_rng(1).uniform(200, 300, SHAPE).astype(np.float32)
    logic = CMBDetectorLogic()
    out = logic.process(volumes.volume_from_array(scene, array, GEOMETRY, "scan"))
    for index, status in ((0, "accepted"), (2, "accepted"), (3, "rejected")):
        logic.setPointStatus(out.fiducialNode, index, status)
    return logic, out.fiducialNode


@pytest.mark.parametrize("locations, expected", [
    ([], "none"), (["lobar", "lobar"], "strictly lobar"), (["deep", "infratentorial"], "deep"),
    (["infratentorial"], "infratentorial"), (["lobar", "deep"], "mixed"), (["lobar", "unknown"], "undetermined")])
def test_pattern_of_definite_locations(locations, expected):
    assert readout.pattern(locations) == expected


def test_readout_counts_definite_possible_and_leaves_out_large_and_rejected(reviewed):
    logic, fiducials = reviewed
    counts = readout.read_out(fiducials)
    assert (counts.definite, counts.possible, counts.too_large, counts.rejected) == (1, 1, 1, 1)
    assert counts.by_size["<5 mm"] == readout.Tally(1, 0) and counts.by_size["5-10 mm"] == readout.Tally(0, 1)
    assert counts.by_location["lobar"] == readout.Tally(1, 0) and counts.by_location["deep"] == readout.Tally(0, 1)
    assert counts.by_location["infratentorial"] == readout.Tally(0, 0)
    assert sum(t.definite for t in counts.by_region_side.values()) == 1
    assert counts.pattern == "strictly lobar"
    table = fiducials.GetNodeReference(readout.COUNTS_ROLE).GetTable()
    assert table.GetValueByName(0, "definite").ToInt() == 1

    logic.setPointStatus(fiducials, 1, "accepted")  # the deep one becomes definite: mixed
    table = fiducials.GetNodeReference(readout.COUNTS_ROLE).GetTable()
    rows = {(table.GetValueByName(r, "group").ToString(), table.GetValueByName(r, "category").ToString()):
            table.GetValueByName(r, "definite").ToInt() for r in range(table.GetNumberOfRows())}
    assert rows[("total", "microbleeds")] == 2 and rows[("pattern", "mixed")] == 2
    assert rows[("not counted", ">10 mm (not a microbleed)")] == 1 and rows[("not counted", "rejected")] == 1
    assert "Definite 2 | possible (pending) 0 | pattern: mixed" in readout.text(readout.read_out(fiducials))


def test_report_has_one_thumbnail_per_definite_point_and_lists_the_rest(reviewed, tmp_path):
    logic, fiducials = reviewed
    path = logic.exportReport(fiducials, tmp_path / "report.html", "scan")
    page = path.read_text()
    thumbs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(thumbs) == 1 and "CMB-1: 3.0 mm" in page  # only the accepted microbleed <= 10 mm
    assert re.search(r"CMB-3</td><td>accepted</td><td>12.0</td><td>&gt;10 mm</td><td>lobar</td><td>not counted", page)
    assert re.search(r"CMB-4</td><td>rejected.*?not counted", page) and re.search(r"CMB-2</td><td>pending.*?possible", page)
    assert "strictly lobar" in page
    import base64

    png = base64.b64decode(thumbs[0])
    assert png.startswith(b"\x89PNG") and png[12:16] == b"IHDR"


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])])
def test_thumbnail_marks_the_point_and_is_radiological(direction):
    """Axial and radiological whatever the volume's axes (RAS, LPS-like, sagittal slices)."""
    array = np.random.default_rng(0).uniform(90, 110, (60, 60, 60)).astype(np.float32)
    geometry = Geometry.from_parts(spacing=(1.0, 1.0, 1.0), origin=-direction @ [30.0, 30.0, 30.0], direction=direction)
    point = np.array([0.0, 0.0, 0.0])
    for shift in ((6.0, 0, 0), (0, 7.0, 0)):  # 6 mm to the patient's right, 7 mm anterior
        i, j, k = np.round(geometry.ras_to_ijk_points(point + shift)[0]).astype(int)
        array[k, j, i] = 0.0
    image = report_page.thumbnail(array, geometry, point, 3.0)
    yellow = np.all(image == report_page.MARKER_RGB, axis=2)
    assert yellow.any() and image.shape[0] == image.shape[1] >= 64
    rows, cols = np.nonzero(yellow)
    centre = np.array([rows.mean(), cols.mean()])
    np.testing.assert_allclose(centre, np.array(image.shape[:2]) / 2, atol=image.shape[0] * 0.05)
    dark_rows, dark_cols = np.nonzero(image.sum(axis=2) == 0)
    assert dark_cols[np.abs(dark_rows - centre[0]) < 3].mean() < centre[1] - 10  # patient right on the left
    assert dark_rows[np.abs(dark_cols - centre[1]) < 3].mean() < centre[0] - 10  # anterior up


def test_process_file_writes_counts_and_report_and_batch_summary_columns(tmp_path, fake_detect):
    fake_detect(IJK, diameters=DIAMETERS, locations=LOCATIONS)
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "scan1.nii.gz", np.random.default_rng(2).uniform(200, 300, SHAPE).astype(np.float32), GEOMETRY)
    batch = CMBDetectorLogic().processDirectory(folder, tmp_path / "out")
    assert not batch.failed
    (row,) = read_csv(tmp_path / "out" / "summary.csv")
    # nothing reviewed yet: the 3 points <= 10 mm are possible, the 12 mm one is excluded
    assert (row["definite"], row["possible"], row["excluded_over_10mm"], row["pattern"]) == ("0", "3", "1", "none")
    counts = read_csv(tmp_path / "out" / "scan1_counts.csv")
    assert list(counts[0]) == list(readout.CSV_COLUMNS)
    assert {(r["group"], r["category"]): r["possible"] for r in counts}[("location", "deep")] == "1"
    page = (tmp_path / "out" / "scan1_report.html").read_text()
    assert "data:image/png" not in page and "0 definite</b>, 3 possible" in page
