"""Synthetic MRI engine: physics (blooming, phase sign), geometry, reproducibility and I/O."""

from __future__ import annotations

import numpy as np
import pytest

from CMBDetectorLib.geometry import Geometry, read_image
from CMBDetectorLib.synth import (AcquisitionProtocol, SyntheticObject, generate_scan, read_objects_csv,
                                  sample_protocol, write_scan)
from CMBDetectorLib.synth.__main__ import main as cli_main
from CMBDetectorLib.synth.objects import MAX_CMB, sample_cmb_count
from CMBDetectorLib.synth.physics import sphere_block

# small but head-covering grid: fast enough for unit tests
SMALL = dict(spacing_mm=(1.0, 1.0, 1.5), shape=(176, 208, 80))


def small(b0=3.0, te=20.0, snr=1000.0, kind="swi3d", **kw) -> AcquisitionProtocol:
    return AcquisitionProtocol(b0, te, kind, snr=snr, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def scan():
    """3 T SWI, 4 CMBs, with calcifications (seed chosen for that)."""
    return generate_scan(0, small(snr=40.0), n_cmb=4, skull_stripped=False)


def _apparent(b0, te, spacing=(0.9, 0.9, 1.2), dchi=0.5):
    geom = Geometry.from_parts(spacing, (0, 0, 0))
    _, block = sphere_block(geom.ijk_to_ras, (200, 200, 200), (60.3, 60.1, 80.2), 1.3, dchi, 0.05, b0, te)
    area = (1 - np.abs(block)).sum(axis=(1, 2)).max() * spacing[0] * spacing[1]
    return 2 * np.sqrt(area / np.pi), np.abs(block).min()


def test_blooming_grows_with_te_and_b0_physics():
    d15, _ = _apparent(3.0, 0.015)
    d40, _ = _apparent(3.0, 0.040)
    d40_low, _ = _apparent(1.5, 0.040)
    assert d40 > d15 * 1.15
    assert d40 > d40_low * 1.1


def test_thick_slices_make_cmbs_fainter():
    _, min_thin = _apparent(3.0, 0.02, (0.9, 0.9, 1.0), dchi=0.3)
    _, min_thick = _apparent(1.5, 0.02, (0.9, 0.9, 5.0), dchi=0.3)
    assert min_thick > min_thin + 0.2


def _dark_voxels(s, obj, half_mm=8.0):
    """Voxels darker than half the local median in a box around an object."""
    ijk = np.round(s.geometry.ras_to_ijk_points(obj.center_ras)[0]).astype(int)
    r = np.ceil(half_mm / s.geometry.spacing).astype(int)
    box = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(ijk[::-1], r[::-1]))
    patch = s.magnitude[box]
    return int((patch < 0.5 * np.median(patch)).sum())


def test_blooming_grows_with_te_and_b0_in_scans():
    scans = {key: generate_scan(3, small(b0, te), n_cmb=4, skull_stripped=True)
             for key, (b0, te) in {"short": (3.0, 15.0), "long": (3.0, 40.0), "low": (1.5, 15.0)}.items()}
    cmbs = {k: s.cmbs for k, s in scans.items()}
    assert len(cmbs["short"]) == len(cmbs["long"]) == len(cmbs["low"]) >= 2
    for short, long, low in zip(cmbs["short"], cmbs["long"], cmbs["low"]):
        assert short.center_ras == long.center_ras == low.center_ras
        assert long.diameter_mm >= short.diameter_mm >= low.diameter_mm
        assert 1.0 < short.diameter_mm < 12.0
    assert sum(o.diameter_mm for o in cmbs["long"]) > sum(o.diameter_mm for o in cmbs["short"]) \
        > sum(o.diameter_mm for o in cmbs["low"])
    dark = {k: sum(_dark_voxels(s, o) for o in cmbs[k]) for k, s in scans.items()}
    assert dark["long"] > dark["short"] > dark["low"]


def _dipole_phase(s, obj):
    """Phase weighted by the dipole pattern (3 cos^2 theta - 1) in a shell around the object."""
    ijk = np.round(s.geometry.ras_to_ijk_points(obj.center_ras)[0]).astype(int)
    r = np.ceil(3 * obj.true_diameter_mm / s.geometry.spacing).astype(int)
    kk, jj, ii = np.meshgrid(*[np.arange(c - h, c + h + 1) for c, h in zip(ijk[::-1], r[::-1])], indexing="ij")
    ijk_all = np.stack([ii, jj, kk], -1).reshape(-1, 3)
    ijk_all = ijk_all[np.all((ijk_all >= 0) & (ijk_all < s.phase.shape[::-1]), axis=1)]
    offset = s.geometry.ijk_to_ras_points(ijk_all) - obj.center_ras
    dist = np.linalg.norm(offset, axis=1)
    shell = (dist > 0.6 * obj.true_diameter_mm) & (dist < 1.5 * obj.true_diameter_mm)
    weight = 3 * (offset[:, 2] / np.maximum(dist, 1e-6)) ** 2 - 1
    phase = s.phase[ijk_all[:, 2], ijk_all[:, 1], ijk_all[:, 0]]
    return float(np.sum(phase[shell] * weight[shell]))


def test_phase_sign_cmb_vs_calcification_physics():
    geom = Geometry.from_parts((0.9, 0.9, 1.2), (0, 0, 0))
    center = (45.0, 45.0, 60.0)
    pole = np.round(geom.ras_to_ijk_points([(45.0, 45.0, 63.0)])[0]).astype(int)
    phases = []
    for dchi in (0.5, -0.5):
        box, block = sphere_block(geom.ijk_to_ras, (100, 100, 100), center, 1.3, dchi, 0.05, 3.0, 0.02)
        start = [s.start for s in box]
        phases.append(np.angle(block[pole[2] - start[0], pole[1] - start[1], pole[0] - start[2]]))
    assert phases[0] < -0.1 and phases[1] > 0.1  # paramagnetic: negative phase along B0


def test_phase_sign_cmb_vs_calcification_in_scan(scan):
    calcs = [o for o in scan.objects if o.kind == "calcification"]
    assert calcs and scan.cmbs
    cmb_signs = {np.sign(_dipole_phase(scan, o)) for o in scan.cmbs}
    calc_signs = {np.sign(_dipole_phase(scan, o)) for o in calcs}
    assert cmb_signs == {-1.0} and calc_signs == {1.0}


def test_api_types_and_ground_truth(scan):
    s = scan
    assert s.magnitude.dtype == np.float32 and s.magnitude.shape == (80, 208, 176)
    assert s.phase.dtype == np.float32 and np.abs(s.phase).max() <= np.pi + 1e-5
    assert s.labels.dtype == np.uint16 and s.brain_mask.dtype == bool
    assert np.all(np.isfinite(s.magnitude)) and s.magnitude.min() >= 0
    assert 100 < np.percentile(s.magnitude[s.brain_mask], 50) < 1500
    assert not np.allclose(s.geometry.direction, np.eye(3), atol=1e-3)
    assert all(isinstance(o, SyntheticObject) for o in s.objects)
    kinds = {o.kind for o in s.objects}
    assert {"cmb", "vein", "calcification", "iron_nucleus"} <= kinds
    assert sorted(o.label for o in s.cmbs) == list(range(1, len(s.cmbs) + 1))
    assert set(np.unique(s.labels)) == {0, *[o.label for o in s.cmbs]}
    assert all(o.location in ("lobar", "deep", "infratentorial") for o in s.cmbs)
    centres, diameters = s.cmb_truth()
    assert centres.shape == (len(s.cmbs), 3) and diameters.shape == (len(s.cmbs),)
    np.testing.assert_allclose(centres[0], s.cmbs[0].center_ras)
    assert diameters[0] == s.cmbs[0].diameter_mm
    assert all(o.label == 0 and o.location == "" and not o.is_cmb for o in s.objects if o.kind != "cmb")


def test_cmb_centre_maps_to_label_and_dark_spot(scan):
    s = scan
    for o in s.cmbs:
        i, j, k = np.round(s.geometry.ras_to_ijk_points(o.center_ras)[0]).astype(int)
        assert s.labels[k, j, i] == o.label
        assert s.brain_mask[k, j, i]
        local = s.magnitude[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2].min()
        ring = s.magnitude[max(k - 3, 0):k + 4, j - 8:j + 9, i - 8:i + 9]
        assert local < 0.6 * np.median(ring)
        region = np.argwhere(s.labels == o.label)[:, ::-1]
        centroid = s.geometry.ijk_to_ras_points(region.mean(0))[0]
        assert np.linalg.norm(centroid - o.center_ras) < max(s.geometry.spacing)


def test_reproducible_and_seed_dependent():
    p = small(kind="gre2d", spacing_mm=(1.2, 1.2, 5.0), shape=(160, 176, 30), b0=1.5)
    a, b, c = (generate_scan(seed, p, n_cmb=2) for seed in (7, 7, 8))
    for name in ("magnitude", "phase", "labels", "brain_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.geometry.ijk_to_ras, b.geometry.ijk_to_ras)
    assert a.objects == b.objects
    assert not np.array_equal(a.magnitude, c.magnitude)


def test_write_read_round_trip(scan, tmp_path):
    paths = write_scan(scan, tmp_path, "case")
    for path, expected in ((paths.magnitude, scan.magnitude), (paths.phase, scan.phase), (paths.labels, scan.labels)):
        array, geometry = read_image(path)
        np.testing.assert_array_equal(array, expected)
        np.testing.assert_allclose(geometry.ijk_to_ras, scan.geometry.ijk_to_ras, atol=1e-4)
    objects = read_objects_csv(paths.objects)
    assert [(o.kind, o.is_cmb, o.label, o.location) for o in objects] == \
        [(o.kind, o.is_cmb, o.label, o.location) for o in scan.objects]
    np.testing.assert_allclose([o.center_ras for o in objects], [o.center_ras for o in scan.objects], atol=1e-3)
    assert [o.template_ras is None for o in objects] == [o.template_ras is None for o in scan.objects]
    np.testing.assert_allclose([o.template_ras for o in objects if o.is_cmb],
                               [o.template_ras for o in scan.cmbs], atol=1e-3)
    labels, geometry = read_image(paths.labels)
    for o in [o for o in objects if o.is_cmb]:
        i, j, k = np.round(geometry.ras_to_ijk_points(o.center_ras)[0]).astype(int)
        assert labels[k, j, i] == o.label


def test_cmb_count_distribution():
    rng = np.random.default_rng(0)
    counts = np.array([sample_cmb_count(rng) for _ in range(4000)])
    assert 0.25 < np.mean(counts == 0) < 0.35
    assert np.mean(counts <= 1) > 0.45
    assert 2.5 < counts[counts > 0].mean() < 5.0
    assert counts.max() <= MAX_CMB


def test_sample_protocol_ranges():
    rng = np.random.default_rng(1)
    protocols = [sample_protocol(rng) for _ in range(200)]
    assert {p.kind for p in protocols} == {"swi3d", "gre2d"}
    assert {p.field_strength_t for p in protocols} == {1.5, 3.0}
    assert all(15 <= p.te_ms <= 40 for p in protocols)
    for p in protocols:
        i, j, k = p.grid_shape()
        assert i <= 256 and j <= 256
        if p.kind == "gre2d":
            assert 4 <= p.spacing_mm[2] <= 5 and 30 <= k <= 40
        else:
            assert p.spacing_mm[0] <= 1.0 and 1 <= p.spacing_mm[2] <= 2 and 60 <= k <= 140


def test_cli_writes_files(tmp_path, monkeypatch):
    from CMBDetectorLib.synth import __main__ as cli

    monkeypatch.setattr(cli, "generate_scan", lambda seed, protocol, skull_stripped: generate_scan(
        seed, small(kind="gre2d", spacing_mm=(1.5, 1.5, 5.0), shape=(128, 144, 30)), 1, skull_stripped))
    assert cli_main(["--n", "1", "--seed", "4", "--out", str(tmp_path), "--skull-stripped"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"synth_00004_{suffix}" for suffix in ("labels.nii.gz", "mag.nii.gz", "objects.csv", "phase.nii.gz")]
    mag, _ = read_image(tmp_path / "synth_00004_mag.nii.gz")
    labels_objects = read_objects_csv(tmp_path / "synth_00004_objects.csv")
    assert mag.shape == (30, 144, 128) and sum(o.is_cmb for o in labels_objects) <= 1


def test_bundled_sample_scan_matches_its_objects():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "Resources" / "SampleData"
    mag, geometry = read_image(folder / "SampleSWI_mag.nii.gz")
    labels, label_geometry = read_image(folder / "SampleSWI_labels.nii.gz")
    objects = read_objects_csv(folder / "SampleSWI_objects.csv")
    cmbs = [o for o in objects if o.is_cmb]
    assert mag.dtype == np.int16 and 4 <= len(cmbs) <= 6
    assert {"vein", "iron_nucleus"} <= {o.kind for o in objects}
    np.testing.assert_allclose(label_geometry.ijk_to_ras, geometry.ijk_to_ras)
    for o in cmbs:
        i, j, k = np.round(geometry.ras_to_ijk_points(o.center_ras)[0]).astype(int)
        assert labels[k, j, i] == o.label
        assert mag[k, j, i] < np.median(mag[max(k - 2, 0):k + 3, j - 10:j + 11, i - 10:i + 11])


def test_vein_centre_lines_lie_where_the_scan_shows_veins(scan):
    """The scan keeps its veins' centre lines in RAS (for the benchmark's false-positive kinds):
    thick veins' centres are dark in the magnitude image, points 10 mm away are not."""
    big = [v for v in scan.vessels if v.radii.mean() >= 1.0]
    assert len(scan.vessels) > 50 and big
    brain = np.median(scan.magnitude[scan.brain_mask])
    shape = np.array(scan.magnitude.shape[::-1])
    on, off = [], []
    for v in big:
        for offset, out in ((0.0, on), (10.0, off)):
            ijk = np.round(scan.geometry.ras_to_ijk_points(v.points + [offset, 0.0, 0.0])).astype(int)
            inside = np.all((ijk >= 0) & (ijk < shape), axis=1)
            i, j, k = ijk[inside].T
            out.extend(scan.magnitude[k, j, i][scan.brain_mask[k, j, i]] / brain)
    assert np.median(on) < 0.8 * np.median(off)
