"""Domain-randomisation knobs move the image; OFF keeps the engine; the stress family lies outside
every training range, and the shifted validation family outside the training and stress ranges."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from CMBDetectorLib.synth import AcquisitionProtocol, generate_scan, sample_protocol
from CMBDetectorLib.synth.acquisition import (FIELDS, MID_SLICES_MM, SHIFTED_FAMILY, STRESS_FAMILY, TRAINING_SLICES_MM,
                                              TRAINING_TE_MS, bias_field, in_training_ranges, sample_mid_slice_protocol,
                                              sample_shifted_protocol, sample_stress_protocol, with_slices)
from CMBDetectorLib.synth.anatomy import load_atlas
from CMBDetectorLib.synth.objects import sample_cmbs
from CMBDetectorLib.synth.randomisation import (OFF, STRESS, WIDE, Randomisation, atrophy_fractions,
                                                gibbs_ringing, motion_ghosts)
from CMBDetectorLib.synth.vessels import through_slice_veins

TINY = AcquisitionProtocol(3.0, 20.0, "swi3d", (2.5, 2.5, 2.5), (72, 84, 60), snr=1000.0)
ALL_ON = Randomisation(through_slice_veins=(60, 60), medullary_density=(2.0, 2.0), cmb_like_calcifications=(3, 3),
                       small_cmb_fraction=1.0, head_scale=(1.12, 1.12), warp_scale=(2.0, 2.0), atrophy=(0.4, 0.4),
                       bias_scale=(2.0, 2.0), snr_scale=(0.8, 0.8), kspace_kept=(0.7, 0.7), motion_rad=(0.2, 0.2))


@pytest.fixture(scope="module")
def pair():
    return generate_scan(5, TINY, n_cmb=4), generate_scan(5, TINY, n_cmb=4, randomisation=ALL_ON)


def test_off_draws_neutral_values():
    v = OFF.draw(np.random.default_rng(0))
    assert (v.through_slice_veins, v.cmb_like_calcifications, v.atrophy, v.motion_rad) == (0, 0, 0.0, 0.0)
    assert v.medullary_density == v.head_scale == v.warp_scale == v.bias_scale == v.snr_scale == v.kspace_kept == 1
    assert v.fov_fraction == 1.0


def test_knobs_move_the_scan(pair):
    base, wide = pair
    assert base.magnitude.shape == wide.magnitude.shape and not np.allclose(base.magnitude, wide.magnitude)
    kinds = [o.kind for o in base.objects], [o.kind for o in wide.objects]
    assert kinds[1].count("vein") > kinds[0].count("vein") + 60  # through-slice veins + denser medullary veins
    like = [o for o in wide.objects if o.kind == "calcification" and o.location]
    assert len(like) >= 1 and not [o for o in base.objects if o.kind == "calcification" and o.location]
    tiny = [o.true_diameter_mm / 1.12 for o in wide.cmbs + like]  # / head scale; the pose adds 0.88-1.13
    assert wide.cmbs and all(1.0 * 0.88 <= d <= 1.6 * 1.13 for d in tiny)  # 1.0-1.6 mm lesions
    assert max(o.true_diameter_mm for o in base.cmbs) > 1.6 * 1.13 * 1.12
    assert wide.brain_mask.sum() > 1.2 * base.brain_mask.sum()  # head scale 1.12: ~1.4x volume


def test_partial_field_of_view_covers_a_slab():
    scan = generate_scan(5, TINY, n_cmb=0, randomisation=Randomisation(partial_fov=1.0))
    assert 0.45 * 60 <= scan.magnitude.shape[0] <= 0.85 * 60 and scan.protocol.shape[2] == scan.magnitude.shape[0]


def test_acquisition_knobs_move_the_image():
    rng = np.random.default_rng(0)
    spread = [np.log(bias_field(np.random.default_rng(1), (8, 16, 16), 3.0, s)).std() for s in (1.0, 2.0)]
    assert spread[1] > 1.5 * spread[0]
    step = np.zeros((4, 32, 64), np.complex64)
    step[:, 8:24, 16:48] = 1
    ringing = np.abs(gibbs_ringing(step, 0.6))
    assert ringing.max() > 1.05 and ringing[:, 8:24, :8].max() > 0.02  # overshoot and ripples
    assert gibbs_ringing(step, 1.0) is step
    ghosts = np.abs(motion_ghosts(rng, step, 0.3))
    assert ghosts[:, :6].mean() > 0.01 and np.abs(step[:, :6]).max() == 0  # ghosts along phase encoding


def test_atrophy_widens_csf_and_keeps_the_fractions():
    gm = np.array([0.2, 0.5, 0.9, 0.0], np.float32)
    wm = np.array([0.1, 0.3, 0.1, 0.0], np.float32)
    csf = 1 - gm - wm
    g, w, c = atrophy_fractions(gm, wm, csf, 0.4)
    np.testing.assert_allclose(g + w + c, gm + wm + csf, atol=1e-6)
    assert c[0] == pytest.approx(1.0) and c[1] > csf[1] and g[2] + w[2] == pytest.approx(1.0)
    assert atrophy_fractions(gm, wm, csf, 0.0)[2] is csf


def test_through_slice_veins_run_along_b0():
    atlas = load_atlas()
    veins = [v for v in through_slice_veins(np.random.default_rng(3), atlas, 40) if len(v.points) > 8]
    trunks = [v for v in veins if np.ptp(v.points[:, 2]) > 5]
    assert len(trunks) > 20
    axis = np.array([v.points[-1] - v.points[0] for v in trunks])
    cos = np.abs(axis[:, 2]) / np.linalg.norm(axis, axis=1)
    assert np.median(cos) > np.cos(np.deg2rad(30))


def test_microbleed_like_calcifications_match_microbleeds_but_the_phase():
    atlas = load_atlas()
    cmbs = sample_cmbs(np.random.default_rng(2), atlas, 6)
    calcs = sample_cmbs(np.random.default_rng(2), atlas, 6, "calcification")
    assert [c.kind for c in calcs] == ["calcification"] * 6
    for a, b in zip(cmbs, calcs):
        assert (a.radius_mm, a.inside_signal, a.location) == (b.radius_mm, b.inside_signal, b.location)
        assert b.dchi_ppm == -a.dchi_ppm < 0


def test_stress_protocols_lie_outside_every_training_range():
    rng = np.random.default_rng(0)
    for p in (sample_stress_protocol(rng) for _ in range(200)):
        assert not in_training_ranges(p)
        assert p.field_strength_t not in FIELDS or not TRAINING_TE_MS[0] <= p.te_ms <= TRAINING_TE_MS[1]
        assert all(not lo <= p.spacing_mm[2] <= hi for lo, hi in TRAINING_SLICES_MM.values())


def test_training_seeds_never_draw_a_stress_protocol():
    for seed in range(1500):  # the training recipes' seeds (< 10 000): dataset.py and generate_scan's draws
        rng = np.random.default_rng(seed)
        assert in_training_ranges(sample_protocol(rng))
        assert in_training_ranges(sample_protocol(rng, kind="gre2d", field_strength_t=1.5))
        assert in_training_ranges(sample_protocol(np.random.default_rng(seed).spawn(1)[0]))
    assert WIDE != STRESS and STRESS.medullary_density[0] >= WIDE.medullary_density[1]
    assert replace(OFF) == Randomisation()


def test_mid_slice_validation_protocols_lie_between_the_trained_regimes():
    rng = np.random.default_rng(0)
    for p in (sample_mid_slice_protocol(rng) for _ in range(100)):
        assert p.kind == "swi3d" and p.field_strength_t in FIELDS and TRAINING_TE_MS[0] <= p.te_ms <= TRAINING_TE_MS[1]
        assert TRAINING_SLICES_MM["swi3d"][1] < MID_SLICES_MM[0] <= p.spacing_mm[2] <= MID_SLICES_MM[1]
        assert MID_SLICES_MM[1] < TRAINING_SLICES_MM["gre2d"][0] and not in_training_ranges(p)
    thin = sample_protocol(np.random.default_rng(1), kind="swi3d")
    thick = with_slices(thin, 3.0)
    extent = [n * s for n, s in zip(thin.grid_shape(), thin.spacing_mm)]
    assert thick.spacing_mm[:2] == thin.spacing_mm[:2] and thick.grid_shape()[:2] == thin.grid_shape()[:2]
    assert abs(thick.grid_shape()[2] * 3.0 - extent[2]) <= 1.5  # the same coverage along k, in fewer slices


def test_wide_training_recipe_reaches_the_engine(monkeypatch):
    import CMBDetectorLib.synth as synth
    from CMBDetectorLib.training.dataset import _synthetic_examples

    seen = []

    def fake(seed, **kwargs):
        seen.append(kwargs["randomisation"])
        raise StopIteration

    monkeypatch.setattr(synth, "generate_scan", fake)
    for wide in (False, True):
        with pytest.raises(StopIteration):
            _synthetic_examples(3, wide=wide)
    assert seen == [OFF, WIDE]


def test_every_stress_and_shifted_protocol_names_its_family():
    from CMBDetectorLib.evaluation.benchmark import protocol_family

    rng = np.random.default_rng(7)
    families = {protocol_family(sample_stress_protocol(rng)) for _ in range(200)}
    assert families == {"7 T, TE 8-12 ms", "3 T, TE 45-55 ms"}
    shifted = {protocol_family(sample_shifted_protocol(rng), SHIFTED_FAMILY) for _ in range(200)}
    assert shifted == {"5 T, TE 18-24 ms", "1.5 T, TE 45-60 ms"}
    for protocol in (sample_protocol(rng), sample_shifted_protocol(rng)):
        with pytest.raises(ValueError):
            protocol_family(protocol)  # neither a training nor a shifted protocol is a stress one


def test_shifted_validation_protocols_lie_outside_training_and_stress_ranges():
    rng = np.random.default_rng(3)
    for p in (sample_shifted_protocol(rng) for _ in range(200)):
        assert p.kind == "swi3d" and not in_training_ranges(p)
        assert p.field_strength_t not in FIELDS or not TRAINING_TE_MS[0] <= p.te_ms <= TRAINING_TE_MS[1]
        assert all(not lo <= p.spacing_mm[2] <= hi for lo, hi in TRAINING_SLICES_MM.values())
        for b0, (te0, te1), (s0, s1) in STRESS_FAMILY:
            assert p.field_strength_t != b0 or not te0 <= p.te_ms <= te1
            assert not s0 <= p.spacing_mm[2] <= s1


def test_validation_draws_reach_the_engine(monkeypatch):
    import CMBDetectorLib.synth as synth
    from CMBDetectorLib.evaluation.benchmark import VALIDATION_SEED0, test_scan

    seen = []
    monkeypatch.setattr(synth, "generate_scan", lambda seed, protocol=None, **kw: seen.append((protocol, kw)))
    test_scan(4, VALIDATION_SEED0, WIDE, "shifted")
    test_scan(4, VALIDATION_SEED0, None, "mid-slices")
    assert not in_training_ranges(seen[0][0]) and seen[0][1]["randomisation"] is WIDE
    assert MID_SLICES_MM[0] <= seen[1][0].spacing_mm[2] <= MID_SLICES_MM[1] and seen[1][1]["randomisation"] is OFF
    with pytest.raises(ValueError, match="unknown protocol draw"):
        test_scan(4, VALIDATION_SEED0, None, "thin")


def _centre_line_gaps(scan) -> np.ndarray:
    """Each microbleed's distance (mm) from its centre to the nearest vein centre line, over its true radius."""
    from CMBDetectorLib.evaluation.mimics import segment_distances
    from CMBDetectorLib.synth.vessels import tube_segments

    segments, _ = tube_segments(scan.vessels)
    centres = np.array([o.center_ras for o in scan.cmbs], float)
    return segment_distances(centres, segments).min(1) / np.array([o.true_diameter_mm / 2 for o in scan.cmbs])


def test_vein_contact_puts_microbleeds_on_veins():
    base = generate_scan(5, TINY, n_cmb=6)
    moved = generate_scan(5, TINY, n_cmb=6, randomisation=Randomisation(vein_contact=1.0))
    assert len(moved.cmbs) == len(base.cmbs) == 6 and not np.allclose(base.magnitude, moved.magnitude)
    on_vein = _centre_line_gaps(moved) <= 1.3  # the centre line runs through the microbleed (warp: +30 %)
    assert on_vein.sum() >= 3 and (_centre_line_gaps(base) <= 1.3).sum() <= 1
    stayed = [np.allclose(a.center_ras, b.center_ras) for a, b in zip(moved.cmbs, base.cmbs)]
    assert all(on_vein | stayed)  # one without a vein in tissue within 15 mm stays where it was
    assert [o.location for o in moved.cmbs] == [o.location for o in base.cmbs]
